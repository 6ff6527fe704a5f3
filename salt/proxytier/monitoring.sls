{#- proxytier.monitoring: for a monitoring minion running Prometheus (not a proxy node). Gives Prometheus
    the exporter of every proxy node (file_sd targets) and installs the project's alert and recording rules
    and the runbook page; each rule and config file is checked by promtool before it replaces the live one,
    then Prometheus is reloaded. Every setting and decision (pillar `proxytier_monitoring` over
    templates/monitoring/defaults.yaml, validated; nodes from the pillar or the mine; targets) comes from
    the model, `proxytier.monitoring` (salt/_utils/proxytier_monitoring.py). -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- set mon = salt["proxytier.monitoring"](tplroot) %}
{%- set prom = mon.prometheus %}

proxytier-monitoring-prometheus-pkg:
  pkg.installed:
    - name: {{ prom.package }}

proxytier-monitoring-rules:
  file.managed:
    - name: {{ mon.rules_file }}
    - source: salt://{{ tpldir }}/templates/monitoring/proxytier.rules.yml.jinja
    - template: jinja
    - context:
        runbook_url: {{ mon.runbook_url | json }}
    - makedirs: True
    - mode: "0644"
    - check_cmd: {{ ((prom.promtool | quote) ~ " check rules") | yaml_dquote }}
    - require:
      - pkg: proxytier-monitoring-prometheus-pkg

{#- The runbook as a console page: Prometheus serves it at /consoles/ (read per request: no reload). #}
proxytier-monitoring-runbook:
  file.managed:
    - name: {{ mon.console_page }}
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
    - dataset: {{ mon.targets | json }}
    - makedirs: True
    - mode: "0644"

{%- if prom.manage_config %}

proxytier-monitoring-prometheus-config:
  file.managed:
    - name: {{ prom.config }}
    - source: salt://{{ tpldir }}/templates/monitoring/prometheus.yml.jinja
    - template: jinja
    - context:
        mon: {{ mon | json }}
    - mode: "0644"
    - check_cmd: {{ ((prom.promtool | quote) ~ " check config") | yaml_dquote }}
    - require:
      - file: proxytier-monitoring-rules
      - file: proxytier-monitoring-targets
{%- endif %}

{#- The live configuration with the new rules, as Prometheus will load it: a broken result fails here,
    with promtool's message, and Prometheus keeps running its previous rules. #}
proxytier-monitoring-prometheus-check:
  cmd.run:
    - name: {{ ((prom.promtool | quote) ~ " check config " ~ (prom.config | quote)) | yaml_dquote }}
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
