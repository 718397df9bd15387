"""REDIS_URL against the REDIS_* parts, and Kubernetes' service-link REDIS_PORT=tcp://host:port."""

from __future__ import annotations

import pytest

from supervisor.config import ConfigError, load_settings


def test_service_link_port_gives_host_and_port():
    s = load_settings(environ={"REDIS_PORT": "tcp://10.96.12.7:6380"})
    assert (s.redis.host, s.redis.port, s.redis.connection_url()) == ("10.96.12.7", 6380, "redis://10.96.12.7:6380/0")
    assert s.warnings == ()


def test_service_link_port_keeps_an_explicit_host():
    s = load_settings(environ={"REDIS_PORT": "tcp://10.96.12.7:6380", "REDIS_HOST": "redis.internal"})
    assert s.redis.connection_url() == "redis://redis.internal:6380/0"


def test_service_link_ipv6():
    s = load_settings(environ={"REDIS_PORT": "tcp://[fd00::7]:6379"})
    assert s.redis.connection_url() == "redis://[fd00::7]:6379/0"


def test_redis_url_wins_and_bad_parts_are_ignored_with_a_warning():
    env = {
        "REDIS_URL": "redis://:secret@cache:6390/2",
        "REDIS_PORT": "tcp://nope",
        "REDIS_PASSWORD": "x",
        "REDIS_DB": "-1",
    }
    s = load_settings(environ=env)
    assert s.redis.connection_url() == "redis://:secret@cache:6390/2"
    assert s.redis.address() == "redis://:***@cache:6390/2"
    assert len(s.warnings) == 2
    assert any(w.startswith("REDIS_PORT='tcp://nope' ignored: REDIS_URL is set") for w in s.warnings)
    assert any(w.startswith("REDIS_DB='-1' ignored") for w in s.warnings)


def test_bad_parts_without_redis_url_still_exit_78():
    with pytest.raises(ConfigError, match="REDIS_PORT='tcp://nope'"):
        load_settings(environ={"REDIS_PORT": "tcp://nope"})


def test_address_names_the_real_port_and_hides_the_password():
    s = load_settings(environ={"REDIS_HOST": "10.0.0.5", "REDIS_PORT": "7001", "REDIS_PASSWORD": "p@ss"})
    assert s.redis.address() == "redis://:***@10.0.0.5:7001/0"
