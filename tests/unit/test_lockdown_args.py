"""engine.locked_down and how its fields reach containers.create and docker run (pure)."""
from __future__ import annotations

from builder import engine


def spec(**kw) -> engine.Spec:
    return engine.Spec(image="img", command=("go", "version"), role="run", **kw)


def test_locked_down_takes_every_privilege_away_and_keeps_the_rest():
    locked = engine.locked_down(spec(network="net1", volumes={"vol": "/gobuild"},
                                     limits=engine.Limits(cpus=0.5, pids=None)))
    kw = engine.create_kwargs(locked, name="n", labels={})
    assert kw["cap_drop"] == ["ALL"] and kw["security_opt"] == ["no-new-privileges:true"]
    assert kw["read_only"] is True and kw["user"] == "65534:65534"
    assert kw["tmpfs"] == {"/tmp": "rw,nosuid,nodev,exec,mode=1777"}
    assert kw["pids_limit"] == 4096  # a limit even when the spec had none
    assert kw["network_mode"] == "net1" and kw["nano_cpus"] == 500_000_000
    assert kw["volumes"] == {"vol": {"bind": "/gobuild", "mode": "rw"}}


def test_a_non_root_user_is_kept_and_root_is_replaced():
    assert engine.locked_down(spec(user="1000:1000")).user == "1000:1000"
    for root in (None, "", "0", "root", "0:0", "0:1000", "root:root", "root:users"):
        assert engine.locked_down(spec(user=root)).user == engine.UNPRIVILEGED_USER, root
    assert engine.locked_down(spec(user="gopher:root")).user == "gopher:root"  # a group is no uid


def test_the_smoke_container_is_locked_down_as_the_images_own_user():
    from builder import smoke
    from builder.build import Built

    image = Built(id="c", tag="gobuild/go:1.22.10-slim-amd64", platform="linux/amd64",
                  image_id="sha256:x", size=1, toolchain_sha256="a" * 64, go_version="1.22.10",
                  variant="slim", status="built")
    for image_user, expected in (("1000:1000", "1000:1000"), (None, engine.UNPRIVILEGED_USER),
                                 ("root", engine.UNPRIVILEGED_USER)):
        s = smoke.smoke_spec(image, pruned=("tests",), emulated=False, image_user=image_user)
        kw = engine.create_kwargs(s, name="n", labels={})
        assert kw["user"] == expected
        assert kw["cap_drop"] == ["ALL"] and kw["security_opt"] == ["no-new-privileges:true"]
        assert kw["read_only"] is True and kw["network_mode"] == "none"
        assert kw["tmpfs"] == {"/tmp": engine.SCRATCH_TMPFS} and kw["pids_limit"] == 4096
        assert kw["environment"]["HOME"] == "/tmp" and not kw.get("volumes")


def test_an_open_spec_asks_for_nothing_of_the_lockdown():
    kw = engine.create_kwargs(spec(), name="n", labels={})
    assert not {"cap_drop", "security_opt", "read_only", "tmpfs"} & set(kw)


def test_docker_run_gets_the_same_lockdown():
    argv = engine.docker_run_argv(engine.locked_down(spec(), pids=64), name="n", labels={},
                                  tty=False)
    joined = " ".join(argv)
    for flag in ("--cap-drop ALL", "--security-opt no-new-privileges:true", "--read-only",
                 "--tmpfs /tmp:rw,nosuid,nodev,exec,mode=1777", "--pids-limit 64",
                 "--user 65534:65534", "--network none"):
        assert flag in joined, flag
