"""Test-only: what `ray up cluster-onprem.yaml` needs on this machine, made for one test and
removed after it: a throw-away user (the head's account), an sshd on 127.0.0.1 that only that
user may log in to, with a throw-away key, and a Python environment the user can run.

Why a user of its own: `ray down` runs `ray stop` on the head, which stops every Ray process of
that account on the machine. As a fresh unprivileged user with its own HOME, Ray temp dir and
ports, the test's head can stop nothing else (another test's cluster, a background sweep).

Why a relay: Ray's SSH runner has no port option, and port 22 may be taken (a system sshd) or
wanted by a parallel run. The test's sshd listens on a free port of 127.0.0.1 and the cluster
file reaches it through `auth.ssh_proxy_command` (Ray's own option, used for bastion hosts), a
20-line stdin/stdout <-> TCP relay. Everything else in the cluster file is the shipped one.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
# Debian package -> the program the test needs from it.
PACKAGES = {"openssh-server": SSHD, "openssh-client": "ssh", "rsync": "rsync"}
VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"


def missing() -> str | None:
    """Why the launcher test cannot run here, as a skip reason naming the fix; None: it can."""
    gone = [pkg for pkg, exe in PACKAGES.items() if not shutil.which(exe)]
    if gone:
        return (
            f"needs {', '.join(gone)} (apt-get install {' '.join(gone)}; .ci/run installs "
            "them): the launcher test runs its own sshd and Ray's rsync file mounts"
        )
    if os.geteuid() != 0:
        return "needs root (as CI runs): it creates a throw-away user and starts an sshd"
    if not shutil.which("useradd"):
        return "needs useradd (Debian's passwd package) to create the throw-away user"
    return None


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    home: Path


def create_user(scratch: Path) -> User:
    """A throw-away login user whose home is `<scratch>/h` (short: Ray's socket paths)."""
    name = f"mfclr{secrets.token_hex(4)}"
    home = scratch / "h"
    # "*": no password works, yet the account is not locked (sshd without PAM refuses "!").
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
         "--password", "*", "--comment", "mfclr launcher test", name],
        check=True, capture_output=True,
    )  # fmt: skip
    return User(name, int(subprocess.check_output(["id", "-u", name], text=True)), home)


def delete_user(user: User) -> None:
    subprocess.run(["userdel", user.name], capture_output=True)


def as_user(user: User, path: Path) -> None:
    """Give `path` (and what is below it) to the user."""
    shutil.chown(path, user.name, user.name)
    for below in path.rglob("*") if path.is_dir() else []:
        os.lchown(below, user.uid, user.uid)


def write_user_file(user: User, path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    as_user(user, path.parent)
    path.write_text(text)
    path.chmod(mode)
    as_user(user, path)


def processes_of(user: User) -> list:
    from ray_nodes import psutil

    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == user.uid]


def named(procs: list, *names: str) -> list:
    """The processes among `procs` with one of these names (gone ones are skipped)."""
    from ray_nodes import psutil

    out = []
    for p in procs:
        try:
            if p.name() in names:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


# ----------------------------------------------------------------------------- sshd


RELAY = """import socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def up():
    while data := sys.stdin.buffer.read1(65536):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := s.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
"""


@dataclass(frozen=True)
class Sshd:
    proc: subprocess.Popen
    port: int
    key: Path  # the client's private key
    proxy_command: str  # what ssh runs to reach it (auth.ssh_proxy_command)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def start_sshd(scratch: Path, user: User, port: int) -> Sshd:
    """An sshd on 127.0.0.1:`port` (our child: stop it by its pid) that admits only `user`,
    with the throw-away key `<scratch>/id_ed25519`."""
    keys = scratch / "ssh"
    keys.mkdir(mode=0o700)
    _keygen(keys / "host_key", "mfclr-test-host")
    _keygen(keys / "id_ed25519", "mfclr-test-client")
    pub = (keys / "id_ed25519.pub").read_text()
    write_user_file(user, user.home / ".ssh" / "authorized_keys", pub, 0o600)
    (user.home / ".ssh").chmod(0o700)
    config = keys / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host_key'}\n"
        f"PidFile {keys / 'sshd.pid'}\nAllowUsers {user.name}\nPermitRootLogin no\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes yes\nX11Forwarding no\nPrintMotd no\n"
        # `ray dashboard` forwards the head's loopback dashboard port through SSH.
        "AllowTcpForwarding local\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    log = open(keys / "sshd.log", "w")  # noqa: SIM115 (the file outlives this call)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    end = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"sshd failed: {(keys / 'sshd.log').read_text()[-2000:]}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < end, "sshd did not listen within 30 s"
            time.sleep(0.2)
    relay = keys / "relay.py"
    relay.write_text(RELAY)
    return Sshd(proc, port, keys / "id_ed25519", f"{sys.executable} -S {relay} {port}")


# ----------------------------------------------------------------------------- python


def _others_can_read(path: Path) -> bool:
    """Whether a user with no relation to the owners can reach and read `path`."""
    path = path.resolve()
    for folder in reversed(path.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    mode = path.stat().st_mode
    needed = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
    return mode & needed == needed


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # instant, no space; needs the same filesystem
    except OSError:
        shutil.copy2(src, dst)


def _base_python(scratch: Path) -> tuple[Path, Path | None]:
    """(a base interpreter the user can run, a lib folder for LD_LIBRARY_PATH or None).

    pyenv's interpreter lives under /root (mode 0700): then its binary, libpython and standard
    library are mirrored with hard links (a copy across filesystems)."""
    base = Path(sys.base_prefix)
    exe, stdlib = base / "bin" / VERSION, base / "lib" / VERSION
    if _others_can_read(exe) and _others_can_read(stdlib):
        return exe, None
    mirror = scratch / "python"
    for folder in ("bin", "lib"):
        (mirror / folder).mkdir(parents=True)
    _link_or_copy(str(exe.resolve()), str(mirror / "bin" / VERSION))
    for lib in (base / "lib").glob("libpython*"):
        if lib.is_symlink():
            (mirror / "lib" / lib.name).symlink_to(os.readlink(lib))
        else:
            _link_or_copy(str(lib), str(mirror / "lib" / lib.name))
    skip = lambda folder, names: ["site-packages"] if Path(folder) == stdlib else []
    shutil.copytree(stdlib, mirror / "lib" / VERSION, symlinks=True, ignore=skip,
                    copy_function=_link_or_copy, dirs_exist_ok=True)  # fmt: skip
    return mirror / "bin" / VERSION, mirror / "lib"


def user_venv(scratch: Path, venv: Path) -> dict[str, str]:
    """A venv at `venv` on this interpreter's packages (the project's venv: reused, since
    installing a second copy of the stack is not what the test checks) that another user can
    run. Returns the environment variables its user's shells need."""
    exe, libdir = _base_python(scratch)
    env = {**os.environ, **({"LD_LIBRARY_PATH": str(libdir)} if libdir else {})}
    subprocess.run([str(exe), "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    site = Path(sys.prefix) / "lib" / VERSION / "site-packages"
    target = venv / "lib" / VERSION / "site-packages"
    target.rmdir()
    if _others_can_read(site):
        target.symlink_to(site)
    else:  # hard links keep the files' modes but not the unreadable folders above them
        shutil.copytree(site, target, symlinks=True, copy_function=os.link)
    for script in ("ray", "mfclr"):  # console scripts, run by this venv's python
        body = (Path(sys.prefix) / "bin" / script).read_text().split("\n", 1)[1]
        (venv / "bin" / script).write_text(f"#!{venv / 'bin' / 'python'}\n{body}")
        (venv / "bin" / script).chmod(0o755)
    return {"LD_LIBRARY_PATH": str(libdir)} if libdir else {}


def prepare_head_account(scratch: Path, user: User) -> None:
    """The user's `~/mfclr-venv` (the path cluster-onprem.yaml runs Ray and mfclr from) and
    `~/.bashrc`, which Ray's SSH runner sources before every command: the user's own Ray temp
    dir (/tmp/ray belongs to whoever made it first), and the synced copy of the repository
    (`file_mounts` ~/mfclr) first on the path, as its editable install would put it."""
    env = user_venv(scratch, user.home / "mfclr-venv")
    lines = [
        "export RAY_TMPDIR=$HOME/t RAY_USAGE_STATS_ENABLED=0 PYTHONPATH=$HOME/mfclr",
        *(f"export {k}={v}" for k, v in env.items()),
    ]
    write_user_file(user, user.home / ".bashrc", "\n".join(lines) + "\n")
    (user.home / "t").mkdir()
    as_user(user, user.home / "t")


# The shipped file's values that the test replaces: its placeholders and Ray's default ports
# (the test's head takes free ones: another cluster may run on this machine).
PLACEHOLDERS = {"head_ip": "HEAD-IP", "ssh_user": "SSH-USER"}
PORT_FLAGS = ("--port=6379", "--object-manager-port=8076", "--ray-client-server-port=10001",
              "--dashboard-agent-listen-port=52365", "--dashboard-port=8265")  # fmt: skip


def cluster_name(user: User) -> str:
    return f"mfclr-test-{user.name}"


def launcher_config(shipped: dict, user: User, sshd: Sshd, ports: list[int]) -> dict:
    """cluster-onprem.yaml for this machine: head 127.0.0.1 (no workers), the test's user, key
    and sshd, its own cluster name (the launcher keeps state and SSH control sockets per
    name), the head on free `ports` (one per PORT_FLAGS), and set-up commands that check the
    reused environment instead of installing it (pip)."""
    cfg = dict(shipped)
    provider, auth = dict(cfg["provider"]), dict(cfg["auth"])
    assert (provider["head_ip"], auth["ssh_user"]) == tuple(PLACEHOLDERS.values()), (
        "cluster-onprem.yaml's placeholders changed; update tests/onprem.py"
    )
    provider.update(head_ip="127.0.0.1", worker_ips=[])
    auth.update(ssh_user=user.name, ssh_private_key=str(sshd.key),
                ssh_proxy_command=sshd.proxy_command)  # fmt: skip
    head = list(cfg["head_start_ray_commands"])
    start = next(i for i, c in enumerate(head) if "ray start" in c)
    for flag, port in zip(PORT_FLAGS, ports, strict=True):
        assert head[start].count(flag) == 1, f"cluster-onprem.yaml's head lost {flag}"
        head[start] = head[start].replace(flag, f"{flag.split('=')[0]}={port}")
    # The venv exists already (its creation is skipped); its installs become a check that it
    # runs the copy of the repository that `ray up` synced (file_mounts ~/mfclr).
    check = (
        "~/mfclr-venv/bin/python -c 'import os, mfclr, ray, torch; "
        'assert mfclr.__file__.startswith(os.path.expanduser("~/mfclr/")), mfclr.__file__\''
    )
    installs = [i for i, c in enumerate(cfg["setup_commands"]) if "pip install" in c]
    assert len(installs) == 2, "cluster-onprem.yaml's install commands changed"
    setup = [check if i == installs[0] else c for i, c in enumerate(cfg["setup_commands"])
             if i not in installs[1:]]  # fmt: skip
    cfg.update(cluster_name=cluster_name(user), provider=provider, auth=auth,
               head_start_ray_commands=head, setup_commands=setup)  # fmt: skip
    return cfg


def drop_control_dir(name: str) -> None:
    """Remove the launcher's SSH control-socket folder of this cluster (Ray makes it as
    /tmp/ray_ssh_<user hash>/<cluster hash>; ssh leaves it behind, empty)."""
    digest = lambda text: hashlib.sha256(text.encode()).hexdigest()[:10]
    parent = Path(f"/tmp/ray_ssh_{digest(getpass.getuser())}")
    shutil.rmtree(parent / digest(name), ignore_errors=True)
    with contextlib.suppress(OSError):
        parent.rmdir()  # only if no other cluster's folder is left in it
