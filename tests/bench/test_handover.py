"""bench/handover's double-MASTER count (lab.tier.double_masters) on keepalived journal lines as
`journalctl -o short-unix` prints them (captured from the lab's keepalived 2.2.7)."""

from __future__ import annotations

from lab import tier

# a handover of VI_51 from proxy1 to proxy2 and back, as the lab's journal showed it: each winner enters
# MASTER and at once logs "forcing new election" (the yielding MASTER's last advert), which is no double
JOURNAL = {
    "proxy1": """\
1764614986.611862 proxy1 Keepalived_vrrp[1177]: (VI_51) Changing effective priority from 150 to 1
1764614986.959065 proxy1 Keepalived_vrrp[1177]: (VI_51) Entering BACKUP STATE
1764614994.152056 proxy1 Keepalived_vrrp[1177]: (VI_51) Entering MASTER STATE
1764614994.153005 proxy1 Keepalived_vrrp[1177]: (VI_51) Received advert from 198.18.0.12 with lower priority 100, \
ours 150, forcing new election""",
    "proxy2": """\
1764614986.958981 proxy2 Keepalived_vrrp[1175]: (VI_51) Entering MASTER STATE
1764614986.959864 proxy2 Keepalived_vrrp[1175]: (VI_51) Received advert from 198.18.0.11 with lower priority 1, \
ours 100, forcing new election
1764614994.151916 proxy2 Keepalived_vrrp[1175]: (VI_51) Entering BACKUP STATE""",
}


def entries(journal: dict[str, str]) -> list[tuple[float, str, str]]:
    return sorted(e for node, text in journal.items() for e in tier.master_entries(node, text))


def test_a_handover_and_back_is_no_double_master() -> None:
    got = entries(JOURNAL)
    assert got == [(1764614986.958981, "proxy2", "VI_51"), (1764614994.152056, "proxy1", "VI_51")]
    assert tier.double_masters(got) == 0


def test_two_backups_entering_master_together_count_once_per_instance() -> None:
    # the release that made proxy1 and proxy3 both MASTER 2.4 ms apart; another instance moving normally
    got = [(10.0, "proxy1", "VI_51"), (10.0024, "proxy3", "VI_51"), (10.0030, "proxy2", "VI_52"),
           (15.0, "proxy2", "VI_51"), (15.3, "proxy2", "VI_51"), (30.0, "proxy1", "VI_52")]
    assert tier.double_masters(got) == 1
    assert tier.double_masters(got, window=0.001) == 0
