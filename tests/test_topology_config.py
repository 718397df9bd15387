"""Sentinel, Cluster and replica-wait settings: parsed, and refused with exit 78 naming the setting."""

from __future__ import annotations

import pytest

from supervisor.config import ConfigError, load_settings
from tests.test_cli_config import run_cli

pytestmark = pytest.mark.timeout(30)


def test_sentinel_form_is_parsed() -> None:
    s = load_settings(
        environ={
            "REDIS_SENTINELS": "10.0.0.1:26379, sentinel-b:26380,[fe80::1]:5000",
            "REDIS_SENTINEL_MASTER": "main",
            "REDIS_SENTINEL_PASSWORD": "pw",
            "REDIS_PASSWORD": "secret",
            "REDIS_WAIT_REPLICAS": "1",
            "REDIS_WAIT_TIMEOUT": "500ms",
        }
    ).redis
    assert s.sentinels == (("10.0.0.1", 26379), ("sentinel-b", 26380), ("fe80::1", 5000))
    assert (s.sentinel_master, s.sentinel_password, s.wait_replicas, s.wait_timeout) == ("main", "pw", 1, 0.5)
    assert "secret" not in repr(s) and "pw" not in repr(s)  # credentials stay out of logs


def test_cluster_form_is_parsed() -> None:
    s = load_settings(environ={"REDIS_CLUSTER": "true", "REDIS_URL": "redis://127.0.0.1:7000"}).redis
    assert s.cluster and s.url == "redis://127.0.0.1:7000"
    assert "cluster=True" in repr(s)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINELS"),  # no master name
        ({"REDIS_SENTINEL_MASTER": "main"}, "REDIS_SENTINEL_MASTER"),  # no sentinels
        ({"REDIS_SENTINELS": "a:0", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "a:1,,b:2", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "a:x", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "bad name"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "redis://h"}, "REDIS_URL"),
        ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_CLUSTER": "1"}, "REDIS_CLUSTER"),
        ({"REDIS_CLUSTER": "perhaps"}, "REDIS_CLUSTER"),
        ({"REDIS_CLUSTER_NODES": "a:7000"}, "REDIS_CLUSTER_NODES"),
        ({"REDIS_CLUSTER": "true", "REDIS_CLUSTER_NODES": "a:99999"}, "REDIS_CLUSTER_NODES"),
        ({"REDIS_CLUSTER": "true", "REDIS_CLUSTER_NODES": "a b"}, "REDIS_CLUSTER_NODES"),
        ({"REDIS_CLUSTER": "true", "REDIS_DB": "2"}, "REDIS_DB"),
        ({"REDIS_CLUSTER": "true", "REDIS_URL": "redis://h:7000/3"}, "REDIS_URL"),
        ({"REDIS_CLUSTER": "true", "REDIS_URL": "unix:///tmp/r.sock"}, "REDIS_URL"),
        ({"REDIS_WAIT_REPLICAS": "-1"}, "REDIS_WAIT_REPLICAS"),
        ({"REDIS_WAIT_REPLICAS": "one"}, "REDIS_WAIT_REPLICAS"),
        ({"REDIS_WAIT_TIMEOUT": "0"}, "REDIS_WAIT_TIMEOUT"),
    ],
)
def test_bad_topology_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env)
    assert err.value.variable == named


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINELS"),
        ({"REDIS_CLUSTER": "true", "REDIS_DB": "1"}, "REDIS_DB"),
        ({"REDIS_WAIT_REPLICAS": "many"}, "REDIS_WAIT_REPLICAS"),
    ],
)
def test_start_exits_78_naming_the_setting(env: dict[str, str], named: str) -> None:
    result = run_cli("start", "--app", "tests.apps.topology_app:app", env=env)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
