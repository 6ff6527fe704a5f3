# Example top file: every proxy node gets the whole formula.
base:
  'proxy*':
    - proxytier
