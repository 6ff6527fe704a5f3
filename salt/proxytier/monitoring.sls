{#- proxytier.monitoring: for a monitoring minion running Prometheus (not a proxy node). Gives Prometheus
    the exporter of every proxy node (file_sd targets from the Salt mine) and installs the project's alert
    and recording rules; each file is checked by promtool before it replaces the live one, then Prometheus
    is reloaded. Settings: pillar `proxytier_monitoring` (defaults in templates/monitoring/defaults.yaml). -#}
{%- import_yaml tpldir ~ "/templates/monitoring/defaults.yaml" as defaults %}
{%- set cfg = salt["slsutil.merge"](defaults, salt["pillar.get"]("proxytier_monitoring", {}), strategy="recurse") %}
{%- set prom = cfg.prometheus %}
{%- if cfg.nodes %}
{%-   set nodes = cfg.nodes %}
{%- else %}
{%-   set nodes = [] %}
{%-   set mine = salt["mine.get"](cfg.target, cfg.mine_function, tgt_type=cfg.tgt_type) %}
{%-   for id in mine | sort %}
{%-     set addresses = mine[id] if mine[id] is not string else [mine[id]] %}
{%-     if addresses %}
{%-       do nodes.append({"id": id, "address": addresses[0]}) %}
{%-     endif %}
{%-   endfor %}
{%- endif %}
{%- set targets = [] %}
{%- for node in nodes %}
{%-   set host = "[" ~ node.address ~ "]" if ":" in node.address else node.address %}
{%-   do targets.append({"targets": [host ~ ":" ~ cfg.port], "labels": {"job": cfg.job, "instance": node.id}}) %}
{%- endfor %}

proxytier-monitoring-prometheus-pkg:
  pkg.installed:
    - name: {{ prom.package }}

proxytier-monitoring-rules:
  file.managed:
    - name: {{ prom.rules_dir }}/proxytier.rules.yml
    - source: salt://{{ tpldir }}/templates/monitoring/proxytier.rules.yml.jinja
    - template: jinja
    - context:
        runbook_url: {{ cfg.runbook_url | json }}
    - makedirs: True
    - mode: "0644"
    - check_cmd: {{ prom.promtool }} check rules
    - require:
      - pkg: proxytier-monitoring-prometheus-pkg

{#- The runbook as a console page: Prometheus serves it at /consoles/ (read per request: no reload). #}
proxytier-monitoring-runbook:
  file.managed:
    - name: {{ prom.consoles_dir }}/proxytier-runbook.html
    - source: salt://{{ tpldir }}/files/monitoring/proxytier-runbook.html
    - makedirs: True
    - mode: "0644"
    - require:
      - pkg: proxytier-monitoring-prometheus-pkg

{#- Prometheus re-reads file_sd files when they change: no reload. An empty list is valid (no node yet). #}
proxytier-monitoring-targets:
  file.serialize:
    - name: {{ prom.targets_file }}
    - serializer: json
    - dataset: {{ targets | json }}
    - makedirs: True
    - mode: "0644"

{%- if prom.manage_config %}

proxytier-monitoring-prometheus-config:
  file.managed:
    - name: {{ prom.config }}
    - source: salt://{{ tpldir }}/templates/monitoring/prometheus.yml.jinja
    - template: jinja
    - context:
        cfg: {{ cfg | json }}
    - mode: "0644"
    - check_cmd: {{ prom.promtool }} check config
    - require:
      - file: proxytier-monitoring-rules
      - file: proxytier-monitoring-targets
{%- endif %}

{#- The live configuration with the new rules, as Prometheus will load it: a broken result fails here,
    with promtool's message, and Prometheus keeps running its previous rules. #}
proxytier-monitoring-prometheus-check:
  cmd.run:
    - name: {{ prom.promtool }} check config {{ prom.config }}
    - onchanges:
      - file: proxytier-monitoring-rules
{%- if prom.manage_config %}
      - file: proxytier-monitoring-prometheus-config
{%- endif %}

proxytier-monitoring-prometheus-service:
  service.running:
    - name: {{ prom.service }}
    - enable: True
    - reload: True
    - require:
      - pkg: proxytier-monitoring-prometheus-pkg
    - watch:
      - cmd: proxytier-monitoring-prometheus-check
