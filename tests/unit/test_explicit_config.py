"""The agent gives lager.bench its bench and claims dir explicitly; scripts keep their env."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lager import protocol
from lager.bench import claims, net

BENCH = """instruments:
  psu: {driver: rigol_dp821, resource: "TCPIP0::127.0.0.1::1::SOCKET"}
nets:
  supply2: {kind: PowerSupply, instrument: psu, channel: 1}
"""


def test_given_dirs_win_over_the_env_and_need_none(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(protocol.ENV_CLAIMS_DIR, raising=False)
    monkeypatch.delenv(protocol.ENV_BENCH_CONFIG, raising=False)
    monkeypatch.setattr(claims, "_dir_given", None)
    monkeypatch.setattr(net, "_bench", None)
    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text(BENCH)
    claims.use_claims_dir(tmp_path / "claims")
    specs = net.use_bench(bench_file)
    assert claims.claims_dir() == tmp_path / "claims"
    assert net.bench() is specs and "supply2" in specs
    assert protocol.ENV_CLAIMS_DIR not in os.environ
    assert protocol.ENV_BENCH_CONFIG not in os.environ
