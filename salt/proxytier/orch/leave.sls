{#- A node leaves a serving tier, with no failed request; only its own VIPs move:
      salt-run state.orchestrate proxytier.orch.leave pillar='{"node": "proxy4"}'
    Membership must come from the mine (proxytier:members_from_mine); with an explicit member
    list, remove the node from proxytier:members and apply the rest instead. If the node has a
    VIP of its own from vip_pool, withdraw its DNS record first and wait out the record's TTL:
    that VIP is gone once the node is.

    1. drain: every HAProxy stops sending new requests to the node's nginx (proxytier.member_state
       NODE drain); the requests in flight finish.
    2. release: the node hands its VIPs to their next members (proxytier.handover NODE release:
       new connections to them are held back for a moment, the ones in flight finish, then its
       VRRP priority sinks and the peers take them). No other VIP moves.
    3. its keepalived stops (proxytier.stop_vrrp): once its peers drop it they stop sending it
       adverts, and a keepalived that hears none takes every VIP it backs up (the mirror image of
       a join). Then its mine data is flushed: no model has it as a member from now on.
    4. every other node converges: HAProxy drops its nginx, keepalived drops it as a peer (and
       the instance of its pool VIP, if any), the filter shuts it out.
    5. (pillar monitoring_tgt) the Prometheus minions re-read the mine: the node is no longer
       scraped, so stopping it next fires no "exporter down" alert.
    6. retire: the node stops and disables keepalived, HAProxy, nginx and the exporter (in
       vip_mode bgp first its health gate, the addresses the gate put on it, and BIRD).

    In vip_mode bgp, step 2 is a graceful shutdown (RFC 8326): the node announces with the
    GRACEFUL_SHUTDOWN community until its connections have finished (at most the handover's
    drain), then withdraws, with its BGP sessions up; step 3 finds keepalived stopped already.
    7. its key is deleted on the master (delete_key, default true): its minion can no longer
       publish mine data (the mine_interval schedule would make it a member again).

    Pillar keys: node (required), target/tgt_type (the tier, default proxy* / glob), sls
    (default proxytier), monitoring_tgt/monitoring_tgt_type (default none), delete_key (default
    true), drain (seconds the release waits for the node's connections: default 2 in VRRP mode,
    bgp:drain in BGP mode). The first step that fails stops the leave; until step 3,
    `salt-run state.orchestrate proxytier.orch.rolling` or `salt NODE proxytier.handover NODE reclaim` and `salt 'proxy*'
    proxytier.member_state NODE ready` put the node back. -#}
{%- set tplroot = tpldir.split("/")[0] %}
{%- set node = salt["pillar.get"]("node", "") %}
{%- set target = salt["pillar.get"]("target", "proxy*") %}
{%- set tgt_type = salt["pillar.get"]("tgt_type", "glob") %}
{%- set sls = salt["pillar.get"]("sls", "proxytier") %}
{%- set monitoring_tgt = salt["pillar.get"]("monitoring_tgt", "") %}
{%- set monitoring_tgt_type = salt["pillar.get"]("monitoring_tgt_type", "glob") %}
{%- set delete_key = salt["pillar.get"]("delete_key", True) %}
{%- set drain = salt["pillar.get"]("drain", None) %}
{%- set up = salt["saltutil.runner"]("manage.up", tgt=target, tgt_type=tgt_type) | sort %}
{%- set others = up | reject("equalto", node) | list %}
{%- if node not in up or not others %}

proxytier-leave-no-node:
  test.fail_without_changes:
    - name: >-
        pillar node={{ node | json }}: {{ "the last node of the tier cannot leave it (nobody would take its VIPs)"
        if node in up else "no minion of that id matching " ~ target ~ " is up" }}; give the id of
        a running member as pillar='{"node": "ID"}'
{%- else %}

proxytier-leave-sync:
  salt.function:
    - name: saltutil.sync_all
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - kwarg:
        refresh: false

{#- sync_all's own refresh only signals the minion (saltutil.refresh_pillar without wait), so a step
    run right after it could still see the old in-memory pillar and modules: refresh and wait. #}
proxytier-leave-pillar:
  salt.function:
    - name: saltutil.refresh_pillar
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - kwarg:
        wait: true
        timeout: 60
    - require:
      - salt: proxytier-leave-sync

proxytier-leave-drain:
  salt.function:
    - name: proxytier.member_state
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - arg: [{{ node | json }}, drain]
    - require:
      - salt: proxytier-leave-pillar

proxytier-leave-release:
  salt.function:
    - name: proxytier.handover
    - tgt: {{ target | json }}
    - tgt_type: {{ tgt_type | json }}
    - arg: [{{ node | json }}, release]
{%-   if drain is not none %}
    - kwarg:
        drain: {{ drain | json }}
{%-   endif %}
    - require:
      - salt: proxytier-leave-drain

proxytier-leave-stop-vrrp:
  salt.function:
    - name: proxytier.stop_vrrp
    - tgt: {{ node | json }}
    - require:
      - salt: proxytier-leave-release

proxytier-leave-mine:
  salt.function:
    - name: mine.flush
    - tgt: {{ node | json }}
    - require:
      - salt: proxytier-leave-stop-vrrp

proxytier-leave-peers:
  salt.state:
    - tgt: {{ others | join(",") }}
    - tgt_type: list
    - sls: {{ sls | json }}
    - require:
      - salt: proxytier-leave-mine
{%-   if monitoring_tgt %}

proxytier-leave-monitoring:
  salt.state:
    - tgt: {{ monitoring_tgt | json }}
    - tgt_type: {{ monitoring_tgt_type | json }}
    - sls: {{ tplroot }}.monitoring
    - require:
      - salt: proxytier-leave-peers
{%-   endif %}

proxytier-leave-retire:
  salt.function:
    - name: proxytier.retire
    - tgt: {{ node | json }}
    - require:
      - salt: {{ "proxytier-leave-monitoring" if monitoring_tgt else "proxytier-leave-peers" }}
{%-   if delete_key %}

proxytier-leave-key:
  salt.wheel:
    - name: key.delete
    - match: {{ node | json }}
    - require:
      - salt: proxytier-leave-retire
{%-   endif %}
{%- endif %}
