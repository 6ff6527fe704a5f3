base:
  'proxy*':
    - proxytier
