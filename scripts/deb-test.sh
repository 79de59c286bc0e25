#!/usr/bin/env bash
# Builds the Debian package (cargo deb -p owamp-cli, from [package.metadata.deb] in
# owamp-cli/Cargo.toml), checks its contents with dpkg-deb and, as root, installs it into
# this system and tries it as a user would:
#   - starts owampd the way the installed systemd unit says (systemd need not run: ExecStart,
#     User, Group, RuntimeDirectory, StateDirectory and LimitNOFILE are read from the installed
#     owampd.service and carried out here), with the installed configuration except for the
#     listening address, which a copy of it in a temporary directory sets to 127.0.0.1 and a
#     free port (the installed example listens on port 861, as a real server should);
#   - runs the installed /usr/bin/owping -c 10 against it;
#   - checks that `man -w owping` finds the installed page;
#   - stops owampd (SIGTERM, as systemctl stop does) and purges the package.
# Nothing is left installed, whatever the outcome. Every wait is bounded.
#
# Usage: scripts/deb-test.sh [path/to/package.deb]   (builds it when not given)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

pkg=owamp-rs
fail() {
    echo "deb-test: FAILED: $*" >&2
    exit 1
}

if ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "deb-test: skipped: no dpkg-deb (not a Debian system)" >&2
    exit 0
fi

# --- Build ---------------------------------------------------------------------------------
if [ $# -ge 1 ]; then
    deb="$1"
else
    if ! cargo deb --version >/dev/null 2>&1; then
        fail "cargo-deb is not installed (cargo install cargo-deb --locked)"
    fi
    echo "== cargo deb -p owamp-cli" >&2
    deb="$(cargo deb -p owamp-cli | tail -n 1)"
fi
[ -f "$deb" ] || fail "no package at $deb"
echo "== package: $deb" >&2

# --- Contents ------------------------------------------------------------------------------
listing="$(dpkg-deb -c "$deb")"
expected=(
    ./usr/bin/owampd ./usr/bin/owping ./usr/bin/owstats ./usr/bin/owfetch ./usr/bin/owup
    ./usr/bin/powstream ./usr/bin/pfstore ./usr/bin/twampd ./usr/bin/twping ./usr/bin/stamp
    ./usr/share/man/man1/twping.1.gz ./usr/share/man/man1/stamp.1.gz ./usr/share/man/man8/twampd.8.gz
    ./usr/share/man/man1/owping.1.gz ./usr/share/man/man1/owfetch.1.gz
    ./usr/share/man/man1/owstats.1.gz ./usr/share/man/man1/owup.1.gz
    ./usr/share/man/man1/powstream.1.gz ./usr/share/man/man1/pfstore.1.gz
    ./usr/share/man/man5/owamp-server.conf.5.gz ./usr/share/man/man5/owamp-server.limits.5.gz
    ./usr/share/man/man5/owamp-server.pfs.5.gz ./usr/share/man/man8/owampd.8.gz
    ./usr/lib/systemd/system/owampd.service ./usr/lib/systemd/system/powstream@.service
    ./etc/owamp-server/owamp-server.conf ./etc/owamp-server/owamp-server.limits
    ./usr/share/doc/owamp-rs/copyright
)
missing=0
for f in "${expected[@]}"; do
    if ! grep -qE "[[:space:]]${f//./\\.}\$" <<<"$listing"; then
        echo "deb-test: missing from the package: $f" >&2
        missing=1
    fi
done
[ "$missing" = 0 ] || fail "files missing (dpkg-deb -c above)"
# The binaries executable, the rest not.
grep -E '[[:space:]]\./usr/bin/[^/]+$' <<<"$listing" | grep -qv '^-rwxr-xr-x' &&
    fail "a binary in /usr/bin is not mode 755"
info="$(dpkg-deb -I "$deb")"
grep -q "^ Package: $pkg\$" <<<"$info" || fail "package name is not $pkg"
for script in postinst postrm prerm; do
    grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\* +$script " <<<"$info" ||
        fail "no executable $script in the control archive"
done
conffiles="$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles)"
for f in /etc/owamp-server/owamp-server.conf /etc/owamp-server/owamp-server.limits; do
    grep -qx "$f" <<<"$conffiles" || fail "$f is not a conffile"
done
echo "== contents: ${#expected[@]} files present, conffiles and maintainer scripts in place" >&2

# --- Install and try -----------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
    echo "deb-test: skipped the install test: it needs root (dpkg -i into this system)" >&2
    exit 0
fi
if dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok'; then
    fail "$pkg is already installed here: not touching it"
fi
for b in owampd owping twampd twping stamp; do
    if [ -e "/usr/bin/$b" ]; then
        echo "deb-test: skipped the install test: /usr/bin/$b exists (another owamp is installed)" >&2
        exit 0
    fi
done

# The owamp user is left behind by a purge, as Debian does; one this test made goes after it.
user_existed=0
getent passwd owamp >/dev/null && user_existed=1
work="$(mktemp -d "${TMPDIR:-/tmp}/deb-test.XXXXXX")"
chmod 755 "$work"
daemon_pid=""
installed=0
cleanup() {
    set +e
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid"
        for _ in $(seq 1 100); do
            kill -0 "$daemon_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$daemon_pid" 2>/dev/null
        wait "$daemon_pid" 2>/dev/null
    fi
    if [ "$installed" = 1 ]; then
        dpkg --purge "$pkg" >/dev/null 2>&1 || echo "deb-test: dpkg --purge $pkg failed" >&2
    fi
    [ -n "${run_dir:-}" ] && rm -rf "$run_dir"
    if [ "$user_existed" = 0 ] && getent passwd owamp >/dev/null; then
        userdel owamp 2>/dev/null
        getent group owamp >/dev/null && groupdel owamp 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== dpkg -i" >&2
installed=1
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
getent passwd owamp >/dev/null || fail "postinst did not create the owamp user"
[ "$(stat -c %U /var/lib/owamp)" = owamp ] || fail "/var/lib/owamp is not owned by owamp"

# The unit as installed.
unit=/usr/lib/systemd/system/owampd.service
[ -f "$unit" ] || fail "no $unit"
key() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
exec_start="$(key ExecStart)"
user="$(key User)"
group="$(key Group)"
runtime="$(key RuntimeDirectory)"
state="$(key StateDirectory)"
nofile="$(key LimitNOFILE)"
[ -n "$exec_start" ] && [ -n "$user" ] || fail "ExecStart or User missing from $unit"
group="${group:-$user}"
echo "== unit: ExecStart=$exec_start User=$user Group=$group" >&2
# What systemd makes before starting the service.
if [ -n "$runtime" ]; then
    run_dir="/run/$runtime"
    install -d -o "$user" -g "$group" -m 0755 "$run_dir"
fi
[ -n "$state" ] && install -d -o "$user" -g "$group" -m 0755 "/var/lib/$state"

# The installed configuration, listening on 127.0.0.1 and a free port instead of 861.
conf="$work/conf"
mkdir "$conf"
cp -p /etc/owamp-server/* "$conf/"
sed -i '/^[[:space:]]*srcnode[[:space:]]/d' "$conf/owamp-server.conf"
echo "srcnode 127.0.0.1:0" >>"$conf/owamp-server.conf"
chown -R "root:$group" "$conf"
chmod 0750 "$conf"
read -r -a argv <<<"$exec_start"
grep -q -- "-c /etc/owamp-server" <<<"$exec_start" || fail "ExecStart does not read /etc/owamp-server"
for i in "${!argv[@]}"; do
    if [ "${argv[$i]}" = "-c" ]; then argv[$((i + 1))]="$conf"; fi
done

echo "== starting: ${argv[*]} (as $user)" >&2
log="$work/owampd.log"
(
    [ -n "$nofile" ] && ulimit -n "$nofile"
    exec setpriv --reuid="$user" --regid="$group" --init-groups "${argv[@]}"
) </dev/null >"$log" 2>&1 &
daemon_pid=$!
port=""
for _ in $(seq 1 100); do
    port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)"
    [ -n "$port" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { cat "$log" >&2; fail "owampd did not start listening"; }
echo "== owampd listens on 127.0.0.1:$port (pid $daemon_pid)" >&2
[ -f "/run/$runtime/owamp-server.pid" ] || fail "no pid file in /run/$runtime"

echo "== /usr/bin/owping -c 10 127.0.0.1:$port" >&2
out="$work/owping.out"
if ! timeout 60 /usr/bin/owping -c 10 -i 0.05 "127.0.0.1:$port" >"$out" 2>"$work/owping.err"; then
    cat "$out" "$work/owping.err" "$log" >&2
    fail "owping"
fi
sent="$(grep -c '10 sent, 0 lost' "$out" || true)"
[ "$sent" = 2 ] || { cat "$out" >&2; fail "owping did not report 10 sent, 0 lost both ways"; }
# The session owampd received was stored (in its datadir, as the owamp user) and fetched.
for _ in $(seq 1 50); do
    grep -q "connection from 127.0.0.1:.* stored=1 store_errors=0" "$log" && break
    sleep 0.1
done
grep -q "connection from 127.0.0.1:.* stored=1 store_errors=0" "$log" ||
    { cat "$log" >&2; fail "owampd did not log the stored session"; }

echo "== man -w owping" >&2
page="$(man -w owping 2>&1)" || fail "man -w owping: $page"
[ "$page" = /usr/share/man/man1/owping.1.gz ] || fail "man -w owping gave $page"

echo "== stopping owampd" >&2
kill -TERM "$daemon_pid"
code=""
for _ in $(seq 1 100); do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        wait "$daemon_pid" && code=0 || code=$?
        break
    fi
    sleep 0.1
done
daemon_pid_was="$daemon_pid"
daemon_pid=""
[ "$code" = 0 ] || { cat "$log" >&2; fail "owampd (pid $daemon_pid_was) did not exit cleanly on SIGTERM (status ${code:-still running})"; }
grep -q "limits: " "$log" && grep "limits: " "$log" >&2

echo "== dpkg --purge $pkg" >&2
dpkg --purge "$pkg" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --purge"; }
installed=0
for f in /usr/bin/owampd /etc/owamp-server/owamp-server.conf /var/lib/owamp "$unit"; do
    [ ! -e "$f" ] || fail "$f is still there after the purge"
done
echo "deb-test: ok: built, checked, installed, owping against the unit's owampd, man page, purged" >&2
