{#- A node joins a serving tier, with no failed request and no VIP of another node moved:
      salt-key -y -a proxy4          (its salt-minion installed and pointed at the master)
      salt-run state.orchestrate proxytier.orch.join pillar='{"node": "proxy4"}'
    Membership must come from the mine (proxytier:members_from_mine, the node allowed by its
    allow-list); with an explicit member list, add the node to proxytier:members first.

    1. sync: every node gets the formula's modules; the new node publishes its address to the
       mine, so every model from now on has it as a member.
    2. the new node converges WITHOUT keepalived (nginx, HAProxy, filter, exporter), and its
       nginx is verified serving. Its keepalived stays down meanwhile: its peers do not send it
       VRRP adverts yet, and a keepalived that hears none takes every VIP it backs up.
    3. every other node converges: each HAProxy adds the new nginx (already serving), each
       keepalived adds it as a unicast peer, each filter lets it in. Nobody's VIP moves: the
       ownership is stable (proxytier_ownership); a VIP of the pool meant for the new node is
       held meanwhile by one of them.
    4. the new node converges whole: its keepalived starts as BACKUP of the others' VIPs (it
       hears their adverts now) and takes the VIP it owns, if any; it is verified serving.
    5. (pillar monitoring_tgt) the Prometheus minions re-read the mine: the node is scraped.

    Pillar keys: node (required: the joining minion id), target/tgt_type (the tier, default
    proxy* / glob), sls (default proxytier), monitoring_tgt/monitoring_tgt_type (the
    minions applying proxytier.monitoring; default none). The first step that fails stops the
    join: the nodes already serving are untouched until step 3, and the tier keeps serving. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- set node = salt["pillar.get"]("node", "") %}
{%- set target = salt["pillar.get"]("target", "proxy*") %}
{%- set tgt_type = salt["pillar.get"]("tgt_type", "glob") %}
{%- set sls = salt["pillar.get"]("sls", "proxytier") %}
{%- set monitoring_tgt = salt["pillar.get"]("monitoring_tgt", "") %}
{%- set monitoring_tgt_type = salt["pillar.get"]("monitoring_tgt_type", "glob") %}
{%- set up = salt["saltutil.runner"]("manage.up", tgt=target, tgt_type=tgt_type) | sort %}
{%- set others = up | reject("equalto", node) | list %}
{%- if node not in up %}

proxytier-join-no-node:
  test.fail_without_changes:
    - name: >-
        pillar node={{ node | json }}: no minion of that id matching {{ target }} is up; accept its key
        (salt-key -a ID), check `salt ID test.ping`, and give its id as pillar='{"node": "ID"}'
{%- else %}

proxytier-join-sync:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - kwarg:
        refresh: false

{#- sync_all's own refresh only signals the minion (saltutil.refresh_pillar without wait), so a step
    run right after it could still see the old in-memory pillar and modules: refresh and wait. #}
proxytier-join-pillar:
  salt.function:
    - name: saltutil.refresh_pillar
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - kwarg:
        wait: true
        timeout: 60
    - require:
      - salt: proxytier-join-sync

proxytier-join-mine:
  salt.function:
    - name: mine.update
    - tgt: {{ node | json }}
    - require:
      - salt: proxytier-join-pillar

proxytier-join-hold-vrrp:
  salt.function:
    - name: proxytier.stop_vrrp
    - tgt: {{ node | json }}
    - require:
      - salt: proxytier-join-mine

proxytier-join-serve:
  salt.state:
    - tgt: {{ node | json }}
    - sls: {{ sls | json }}
    - exclude:
      - sls: {{ tplroot }}.keepalived
    - require:
      - salt: proxytier-join-hold-vrrp

proxytier-join-serving:
  salt.function:
    - name: proxytier.verify
    - tgt: {{ node | json }}
    - kwarg:
        vrrp: false
    - require:
      - salt: proxytier-join-serve
{%-   if others %}

proxytier-join-peers:
  salt.state:
    - tgt: {{ others | join(",") }}
    - tgt_type: list
    - sls: {{ sls | json }}
    - require:
      - salt: proxytier-join-serving
{%-   endif %}

proxytier-join-vrrp:
  salt.state:
    - tgt: {{ node | json }}
    - sls: {{ sls | json }}
    - require:
      - salt: {{ "proxytier-join-peers" if others else "proxytier-join-serving" }}

proxytier-join-verify:
  salt.function:
    - name: proxytier.verify
    - tgt: {{ node | json }}
    - require:
      - salt: proxytier-join-vrrp
{%-   if monitoring_tgt %}

proxytier-join-monitoring:
  salt.state:
    - tgt: {{ monitoring_tgt | json }}
    - tgt_type: {{ monitoring_tgt_type | json }}
    - sls: {{ tplroot }}.monitoring
    - require:
      - salt: proxytier-join-verify
{%-   endif %}
{%- endif %}
