#!/bin/sh
# Two "nodes" on one machine, for multi-node tests of ddp: two network
# namespaces NAMEa and NAMEb joined by a veth pair, each with its own
# hostname (its namespace's name), so that Open MPI sees two hosts with real
# TCP between them. Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN), `ip`
# (iproute2) and `unshare` (util-linux).
#
#   two-nodes.sh up NAME           make NAMEa and NAMEb (NAME: at most 10
#                                  characters, letters and digits)
#   two-nodes.sh down NAME         kill what still runs in them, delete them
#   two-nodes.sh exec NS CMD...    run CMD in namespace NS with hostname NS
#   two-nodes.sh rsh NS CMD...     mpirun's rsh agent: as exec, CMD being one
#                                  shell command line, as ssh would run it
#   two-nodes.sh link NAME up|down bring node b's end of the link up or down
#   two-nodes.sh addr NS           NS's address on the link
#
# By hand (as root), ddp with one rank on each node:
#   tests/netns/two-nodes.sh up pbn
#   tests/netns/two-nodes.sh exec pbna mpirun --allow-run-as-root -np 2 \
#       -H pbna,pbnb --mca plm_rsh_agent "$PWD/tests/netns/two-nodes.sh rsh" \
#       --mca btl tcp,self --mca btl_tcp_if_include 169.254.231.0/30 \
#       --mca oob_tcp_if_include 169.254.231.0/30 --timeout 120 \
#       ./bench --strategy ddp --gpus 2 --backend cpu --workload mlp-xs --iters 5
#   tests/netns/two-nodes.sh down pbn
#
# The addresses are link-local (169.254.231.1 and .2/30) and exist only
# inside the two namespaces, so nothing leaves this machine and two pairs
# made at once (other names) do not collide. Each node's veth is named after
# its namespace, so the two differ: give Open MPI the link's subnet, not an
# interface name. The host names need no /etc/hosts entry: mpirun
# recognises its own (its hostname), the agent maps the other to its
# namespace, and the daemons find each other by their addresses on the
# subnet given to oob_tcp_if_include.
set -eu

die() {
    echo "two-nodes.sh: $*" >&2
    exit 2
}

check_name() {
    case "$1" in
    '' | *[!A-Za-z0-9]*) die "name '$1': letters and digits only" ;;
    esac
    # interface names are at most 15 bytes; the namespace's is NAME plus a/b
    [ ${#1} -le 10 ] || die "name '$1': at most 10 characters"
}

# what `ip netns pids` lists, killed by pid: only processes inside our own
# namespaces (a test's ranks and daemons that outlived it)
kill_inside() {
    ns=$1
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] || return 0
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        sleep 0.1
    done
    echo "two-nodes.sh: processes still in $ns: $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')" >&2
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
up)
    [ $# -eq 1 ] || die "usage: up NAME"
    check_name "$1"
    command -v ip >/dev/null || die "no 'ip' command (Debian package iproute2)"
    command -v unshare >/dev/null || die "no 'unshare' command (util-linux)"
    a=${1}a b=${1}b
    # a half-made pair is removed again, so a failed `up` leaves nothing
    trap 'ip netns del "$a" 2>/dev/null; ip netns del "$b" 2>/dev/null' EXIT
    ip netns add "$a"
    ip netns add "$b"
    ip link add "$a" netns "$a" type veth peer name "$b" netns "$b"
    ip -n "$a" addr add 169.254.231.1/30 dev "$a"
    ip -n "$b" addr add 169.254.231.2/30 dev "$b"
    for ns in "$a" "$b"; do
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$ns" up
    done
    trap - EXIT
    ;;
down)
    [ $# -eq 1 ] || die "usage: down NAME"
    check_name "$1"
    rc=0
    for ns in "${1}a" "${1}b"; do
        ip netns list 2>/dev/null | grep -q "^$ns\b" || continue
        kill_inside "$ns"
        ip netns del "$ns" || rc=1
    done
    exit $rc
    ;;
exec)
    [ $# -ge 2 ] || die "usage: exec NS CMD..."
    ns=$1
    shift
    # a UTS namespace of its own: the hostname is the node's name for MPI
    # shellcheck disable=SC2016 # expanded by the inner shell
    exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$ns" "$@"
    ;;
rsh)
    # mpirun calls AGENT HOST COMMAND-WORDS...; ssh would join the words and
    # hand them to the remote shell, so do the same
    [ $# -ge 2 ] || die "usage: rsh NS COMMAND..."
    ns=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner shell
    exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec sh -c "$1"' "$ns" "$*"
    ;;
link)
    [ $# -eq 2 ] || die "usage: link NAME up|down"
    check_name "$1"
    exec ip -n "${1}b" link set "${1}b" "$2"
    ;;
addr)
    [ $# -eq 1 ] || die "usage: addr NS"
    case "$1" in
    *a) echo 169.254.231.1 ;;
    *b) echo 169.254.231.2 ;;
    *) die "namespace '$1': not made by up (NAMEa or NAMEb)" ;;
    esac
    ;;
*)
    die "usage: up NAME | down NAME | exec NS CMD... | rsh NS CMD... | link NAME up|down | addr NS"
    ;;
esac
