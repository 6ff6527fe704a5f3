{#- Rolling change, one proxy node at a time, with no failed requests:
      salt-run state.orchestrate proxytier.orch.rolling [pillar='{"target": "proxy*", "sls": "proxytier"}']
    For each node in turn: every HAProxy drains that node's nginx; the node hands
    its VIPs to its peers (keepalived stopped: priority-0 adverts, ~0.1 s); the
    formula is applied to it (which starts keepalived again); it is verified
    (nginx, HAProxy, every nginx seen UP, its own VIPs back); then every HAProxy
    puts its nginx back. The first node that fails stops the rollout: it stays
    drained, the nodes not yet done are untouched, the tier keeps serving.

    Moving a VIP resets the client connections in flight on it (measured in the
    lab: a few requests per move under load). Changes that only reload the daemons
    are hitless without it: pillar='{"handover_vips": false}' keeps the VIPs in
    place and only drains nginx. Keep the default for anything that restarts
    HAProxy or keepalived (package upgrades). -#}
{%- set target = salt["pillar.get"]("target", "proxy*") %}
{%- set tgt_type = salt["pillar.get"]("tgt_type", "glob") %}
{%- set sls = salt["pillar.get"]("sls", "proxytier") %}
{%- set handover = salt["pillar.get"]("handover_vips", True) %}
{%- set nodes = salt["saltutil.runner"]("manage.up", tgt=target, tgt_type=tgt_type) | sort %}
{%- if not nodes %}

proxytier-rolling-no-nodes:
  test.fail_without_changes:
    - name: "no minion matching {{ target }} is up: nothing to roll"
{%- endif %}
{%- for node in nodes %}
{%-   set previous = loop.previtem if not loop.first else None %}

proxytier-rolling-{{ node }}-drain:
  salt.function:
    - name: proxytier.member_state
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type }}
    - arg: [{{ node }}, drain]
{%-   if previous %}
    - require:
      - salt: proxytier-rolling-{{ previous }}-ready
{%-   endif %}

{%-   if handover %}

proxytier-rolling-{{ node }}-handover:
  salt.function:
    - name: service.stop
    - tgt: {{ node }}
    - arg: [keepalived]
    - require:
      - salt: proxytier-rolling-{{ node }}-drain
{%-   endif %}

proxytier-rolling-{{ node }}-apply:
  salt.state:
    - tgt: {{ node }}
    - sls: {{ sls }}
    - require:
      - salt: proxytier-rolling-{{ node }}-{{ "handover" if handover else "drain" }}

proxytier-rolling-{{ node }}-verify:
  salt.function:
    - name: proxytier.verify
    - tgt: {{ node }}
    - require:
      - salt: proxytier-rolling-{{ node }}-apply

proxytier-rolling-{{ node }}-ready:
  salt.function:
    - name: proxytier.member_state
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type }}
    - arg: [{{ node }}, ready]
    - require:
      - salt: proxytier-rolling-{{ node }}-verify
{%- endfor %}
