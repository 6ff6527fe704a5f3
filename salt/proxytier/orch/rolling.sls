{#- Rolling change, one proxy node at a time, with no failed requests:
      salt-run state.orchestrate proxytier.orch.rolling [pillar='{"target": "proxy*", "sls": "proxytier"}']
    For each node in turn: every HAProxy drains that node's nginx; the node hands
    its VIPs to its peers (proxytier.handover release: new connections to them are
    held back for a moment, the ones in flight finish, then its VRRP priority
    sinks and the peers take them); its packages are reinstalled if asked
    (reinstall: true, as an upgrade would restart the daemons); the formula is
    applied to it; it is verified (nginx, HAProxy, keepalived, every nginx seen
    UP); it takes its VIPs back the same careful way (handover reclaim); every
    HAProxy puts its nginx back. In vip_mode bgp, release and reclaim take the node
    out of the routers' routes and back (its health gate's hold file: the gate
    withdraws, the BGP sessions stay up). The first node that fails stops the rollout: it
    stays drained, the nodes not yet done are untouched, the tier keeps serving.

    Pillar keys: target/tgt_type (the proxy nodes), sls (what to apply),
    reinstall (reinstall nginx, haproxy, keepalived before applying), and
    handover_vips (default true; false keeps the VIPs in place and only drains
    nginx: enough for changes that only reload the daemons), drain (seconds a release
    waits for the node's connections: default 2 in VRRP mode, bgp:drain in BGP mode). -#}
{%- set target = salt["pillar.get"]("target", "proxy*") %}
{%- set tgt_type = salt["pillar.get"]("tgt_type", "glob") %}
{%- set sls = salt["pillar.get"]("sls", "proxytier") %}
{%- set handover = salt["pillar.get"]("handover_vips", True) %}
{%- set reinstall = salt["pillar.get"]("reinstall", False) %}
{%- set drain = salt["pillar.get"]("drain", None) %}
{%- set nodes = salt["saltutil.runner"]("manage.up", tgt=target, tgt_type=tgt_type) | sort %}
{%- if not nodes %}

proxytier-rolling-no-nodes:
  test.fail_without_changes:
    - name: "no minion matching {{ target }} is up: nothing to roll"
{%- endif %}
{%- if nodes %}

{#- The runtime functions below (member_state, handover, verify) and the model they share live in
    the formula's _modules and _utils: every node gets this checkout's copy first. #}
proxytier-rolling-sync:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - kwarg:
        refresh: false

{#- sync_all's own refresh only signals the minion (saltutil.refresh_pillar without wait), so a step
    run right after it could still see the old in-memory pillar and modules: refresh and wait. #}
proxytier-rolling-pillar:
  salt.function:
    - name: saltutil.refresh_pillar
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - kwarg:
        wait: true
        timeout: 60
    - require:
      - salt: proxytier-rolling-sync
{%- endif %}
{%- for node in nodes %}
{%-   set previous = loop.previtem if not loop.first else None %}
{%-   set steps = ["drain"] + (["release"] if handover else []) + (["reinstall"] if reinstall else [])
              + ["apply", "verify"] + (["reclaim"] if handover else []) + ["ready"] %}
{%-   for step in steps %}
{%-     set id = "proxytier-rolling-" ~ node ~ "-" ~ step %}
{%-     set after = ("proxytier-rolling-" ~ node ~ "-" ~ loop.previtem) if not loop.first
                    else (("proxytier-rolling-" ~ previous ~ "-ready") if previous else "proxytier-rolling-pillar") %}

{{ id }}:
{%-     if step == "apply" %}
  salt.state:
    - tgt: {{ node }}
    - sls: {{ sls | json }}
{%-     else %}
  salt.function:
{%-       if step in ("drain", "ready") %}
    - name: proxytier.member_state
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - arg: [{{ node }}, {{ step }}]
{%-       elif step in ("release", "reclaim") %}
    - name: proxytier.handover
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - arg: [{{ node }}, {{ step }}]
{%-         if step == "release" and drain is not none %}
    - kwarg:
        drain: {{ drain | json }}
{%-         endif %}
{%-       elif step == "reinstall" %}
    - name: proxytier.reinstall
    - tgt: {{ node }}
{%-       elif step == "verify" %}
    - name: proxytier.verify
    - tgt: {{ node }}
    - kwarg:
        vips: {{ not handover }}
{%-       endif %}
{%-     endif %}
{%-     if after %}
    - require:
      - salt: {{ after }}
{%-     endif %}
{%-   endfor %}
{%- endfor %}
