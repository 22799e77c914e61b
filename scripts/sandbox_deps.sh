#!/usr/bin/env bash
# Install and start what toolgym's shell sandboxes need, on a Debian machine, as root:
#   1. bubblewrap, docker.io and debootstrap from the machine's apt mirror (skipped when present);
#   2. dockerd in the background (skipped when `docker info` answers);
#   3. the base image $TOOLGYM_SHELL_IMAGE, built offline: no registry is reachable, so a minimal
#      Debian is debootstrapped from the apt mirror and `docker import`ed (skipped when it exists).
# Idempotent: a second run only checks and takes about a second. Prints the time of each step.
#
# Environment:
#   TOOLGYM_SHELL_IMAGE    image name            (default toolgym/shell:bookworm)
#   TOOLGYM_SANDBOX_CACHE  rootfs tarball cache  (default /var/cache/toolgym)
#   TOOLGYM_DOCKERD_LOG    dockerd log file      (default /var/log/toolgym-dockerd.log)
#   TOOLGYM_DEBIAN_MIRROR  override the mirror read from /etc/apt/sources.list*
set -euo pipefail

IMAGE="${TOOLGYM_SHELL_IMAGE:-toolgym/shell:bookworm}"
CACHE="${TOOLGYM_SANDBOX_CACHE:-/var/cache/toolgym}"
DOCKERD_LOG="${TOOLGYM_DOCKERD_LOG:-/var/log/toolgym-dockerd.log}"
SUITE=bookworm
# What the shell task catalog uses; the bwrap backend finds the same tools on the host.
IMAGE_PACKAGES=bash,coreutils,findutils,grep,sed,mawk,diffutils,procps,tar,gzip,bzip2,xz-utils,zip,unzip,python3,git,jq,bc,file,sqlite3,make,patch,less
HOST_PACKAGES=(bubblewrap docker.io debootstrap git python3 jq bc zip unzip file sqlite3 xz-utils bzip2 patch make)

T0=$(date +%s.%N)
step_start=$T0
log() { printf '[sandbox-deps] %s\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
done_step() { log "$1: $2 ($(elapsed "$step_start") s)"; step_start=$(date +%s.%N); }

if [ "$(id -u)" != 0 ]; then
    log "must run as root (it installs packages and starts dockerd); try: sudo $0"
    exit 1
fi

# ------------------------------------------------------------------ 1. packages
missing=()
for pkg in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Another apt run (a parallel session, unattended upgrades) may hold the lock: wait for it.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    done_step packages "installed ${missing[*]}"
else
    done_step packages "all present"
fi

# ------------------------------------------------------------------ 2. dockerd
# With --userns-remap, root in a container is an unprivileged host uid (dockremap's subordinate
# range): no container process maps to host uid 0. TOOLGYM_DOCKER_USERNS=0 keeps a plain daemon.
# A remapped daemon keeps its images apart (/var/lib/docker/<uid>.<gid>), so step 3 re-imports.
USERNS="${TOOLGYM_DOCKER_USERNS:-1}"
dockerd_remapped() { docker info -f '{{.SecurityOptions}}' 2>/dev/null | grep -q 'name=userns'; }
start_dockerd() {
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid + nohup: the daemon outlives this script and the make that ran it.
    setsid nohup dockerd "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    local deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.5
    done
}
stop_dockerd() {
    # Only the daemon named by its own pid file (never by process name).
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
}
if docker info >/dev/null 2>&1 && { [ "$USERNS" = 0 ] || dockerd_remapped; }; then
    done_step dockerd "already answering ($(dockerd_remapped && echo with || echo WITHOUT) user-namespace remap)"
else
    if docker info >/dev/null 2>&1; then
        log "dockerd runs without --userns-remap: restarting it with the remap"
        stop_dockerd
    fi
    if [ "$USERNS" != 0 ] && start_dockerd --userns-remap=default; then
        done_step dockerd "started with --userns-remap=default (log: $DOCKERD_LOG)"
    else
        [ "$USERNS" != 0 ] && { log "dockerd --userns-remap=default did not start; WEAKER: container root is host root"; stop_dockerd; }
        if ! start_dockerd; then
            log "dockerd did not answer within 60 s; its log, $DOCKERD_LOG, ends with:"
            tail -n 20 "$DOCKERD_LOG" >&2
            exit 1
        fi
        done_step dockerd "started WITHOUT user-namespace remap (log: $DOCKERD_LOG)"
    fi
fi

# ------------------------------------------------------------------ 3. base image
debian_mirror() {
    # The first Debian archive (not -security) named in apt's sources, one-line or deb822 format.
    if [ -n "${TOOLGYM_DEBIAN_MIRROR:-}" ]; then echo "$TOOLGYM_DEBIAN_MIRROR"; return; fi
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && cat "$f"
    done \
        | grep -oE '(^deb|^URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?[a-z]+://[^[:space:]]+' \
        | grep -oE '[a-z]+://[^[:space:]]+' | grep -v -- '-security' | grep -i debian | head -n 1 || true
}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    done_step image "$IMAGE already built"
else
    tarball="$CACHE/$SUITE-rootfs.tar"
    if [ ! -s "$tarball" ]; then
        mirror="$(debian_mirror)"
        if [ -z "$mirror" ]; then
            log "no Debian mirror in /etc/apt/sources.list*; set TOOLGYM_DEBIAN_MIRROR=http://..."
            exit 1
        fi
        mkdir -p "$CACHE"
        rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
        trap 'rm -rf "$rootfs"' EXIT
        log "debootstrap $SUITE from $mirror"
        debootstrap --variant=minbase --include="$IMAGE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
            >"$CACHE/debootstrap.log" 2>&1 || { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
        # Smaller image: apt lists, caches and docs are not needed to run tasks.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
            "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
        mkdir -p "$rootfs/workspace"
        tar -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
        rm -rf "$rootfs"
        trap - EXIT
        done_step rootfs "debootstrapped to $tarball"
    fi
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'WORKDIR /workspace' \
        --change 'CMD ["bash"]' \
        "$tarball" "$IMAGE" >/dev/null
    done_step image "imported $IMAGE"
fi

log "ready in $(elapsed "$T0") s: bwrap $(bwrap --version | awk '{print $2}'), docker $(docker version -f '{{.Server.Version}}'), image $IMAGE"
