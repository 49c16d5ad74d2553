#!/usr/bin/env bash
# Build the image from the Dockerfile with podman and try it as a user would, without a GPU or a network:
#   scripts/check_image.sh [--base IMAGE] [--tag TAG] [--runs DIR]
# 1. build (when the CUDA base cannot be pulled, on a local stand-in: Debian minbase with the base's ENV and
#    its user "ubuntu" of uid 1000, to prove the build has no uid clash),
# 2. train the quickstart for 2 epochs with the default command's recipe, --network none, as another uid
#    than the image's (a bind-mounted runs folder owned by that uid), files group-readable,
# 3. start a longer run, `podman stop` it mid-training (SIGTERM, then a grace period), expect exit code 75 and
#    a checkpoint, resume it with --resume auto to exit code 0,
# and print each result. Run it after changing Dockerfile, docker/entrypoint.sh or scripts/launch.py (as root,
# or with rootless podman; about 10 minutes, most of it pip installing torch). Needs podman, buildah,
# mmdebstrap, runc, uidmap and fuse-overlayfs (Debian packages); CI does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
TAG=localhost/trainer:check
RUNS=$(mktemp -d /tmp/trainer-image-runs.XXXXXX)
while [ $# -gt 0 ]; do
    case "$1" in
        --base) BASE=$2; shift 2 ;;
        --tag) TAG=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        *) echo "usage: scripts/check_image.sh [--base IMAGE] [--tag TAG] [--runs DIR]" >&2; exit 2 ;;
    esac
done
for tool in podman buildah; do
    command -v "$tool" >/dev/null || { echo "check_image.sh: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done
ok=0
step() { printf '\n== %s\n' "$*"; }
result() { printf -- '-> %s\n' "$*"; }
fail() { printf -- '-> FAILED: %s\n' "$*"; ok=1; }

# podman in a sandbox: runc (crun is refused here), and enough open files for pip
conf=/etc/containers/containers.conf
if [ "$(id -u)" = 0 ] && ! grep -q '^runtime *= *"runc"' "$conf" 2>/dev/null; then
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' >>"$conf"
fi

step "base image $BASE"
if podman image exists "$BASE" || podman pull -q "$BASE" >/dev/null 2>&1; then
    result "using $BASE"
else
    STANDIN=localhost/trainer-base-standin
    if ! podman image exists "$STANDIN"; then
        command -v mmdebstrap >/dev/null || { echo "check_image.sh: mmdebstrap is needed for the stand-in" >&2; exit 2; }
        work=$(mktemp -d)
        mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
        mmdebstrap --variant=minbase --format=tar trixie "$work/rootfs.tar" "${mirror:-http://deb.debian.org/debian}"
        podman import "$work/rootfs.tar" localhost/debian-minbase >/dev/null
        cp /etc/ssl/certs/ca-certificates.crt "$work/"
        # What the CUDA base brings that the Dockerfile relies on: its ENV, user ubuntu (uid 1000), and here
        # this machine's CA bundle for pip (the stand-in's business, never the project's Dockerfile's).
        cat >"$work/Containerfile" <<'STANDIN'
FROM localhost/debian-minbase
COPY ca-certificates.crt /etc/ssl/host-ca-certificates.crt
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility CUDA_VERSION=13.0.1 \
    PIP_CERT=/etc/ssl/host-ca-certificates.crt
RUN groupadd --gid 1000 ubuntu && useradd --uid 1000 --gid 1000 --create-home ubuntu
STANDIN
        podman build --pull=never -q -t "$STANDIN" "$work" >/dev/null
        rm -rf "$work"
    fi
    BASE=$STANDIN
    result "$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile) cannot be pulled here: built on the stand-in $STANDIN"
fi

step "build $TAG"
start=$(date +%s)
if podman build --pull=never --build-arg "BASE_IMAGE=$BASE" -t "$TAG" . >/tmp/check_image_build.log 2>&1; then
    result "built in $(($(date +%s) - start)) s ($(podman image inspect "$TAG" --format '{{.Size}}') bytes)"
else
    tail -n 20 /tmp/check_image_build.log
    fail "build (log: /tmp/check_image_build.log)"
    exit 1
fi

uid=4321
run() { podman run --rm --network none --ipc=host "$@"; }

step "the default command's recipe, 2 epochs, as uid $uid on a runs folder it owns, no network"
mkdir -p "$RUNS/as_user"
chown "$uid:$uid" "$RUNS/as_user"
set +e
run --user "$uid:$uid" -v "$RUNS/as_user:/app/runs" "$TAG" recipes/quickstart.toml --set train.epochs=2 \
    >"$RUNS/as_user.log" 2>&1
code=$?
set -e
tail -n 3 "$RUNS/as_user.log"
if [ "$code" = 0 ] && [ -f "$RUNS/as_user/quickstart/model.safetensors" ]; then
    result "exit code 0; $(grep -c '"eval_top1"' "$RUNS/as_user/quickstart/metrics.jsonl") eval records"
else
    fail "exit code $code"
fi
unreadable=$(find "$RUNS/as_user/quickstart" -type f ! -perm -g+r | wc -l)
owners=$(find "$RUNS/as_user/quickstart" ! -user "$uid" | wc -l)
if [ "$unreadable" = 0 ] && [ "$owners" = 0 ]; then
    result "every file owned by uid $uid and group-readable ($(stat -c %A "$RUNS/as_user/quickstart/model.safetensors") model.safetensors)"
else
    fail "$unreadable files not group-readable, $owners not owned by uid $uid"
fi

step "podman stop during training (the image's own user, uid 1000), then --resume auto"
mkdir -p "$RUNS/stopped"
chown 1000:1000 "$RUNS/stopped"
name=trainer-check-$$
podman run -d --name "$name" --network none --ipc=host -v "$RUNS/stopped:/app/runs" "$TAG" \
    recipes/quickstart.toml --set train.epochs=6 >/dev/null
deadline=$(($(date +%s) + 600))
until podman logs "$name" 2>&1 | grep -q "^step 30/"; do
    if [ "$(date +%s)" -gt "$deadline" ] || [ "$(podman inspect "$name" --format '{{.State.Running}}')" != true ]; then
        podman logs "$name" 2>&1 | tail -n 5
        fail "the run never reached step 30"
        break
    fi
    sleep 1
done
podman stop -t 120 "$name" >/dev/null
code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
podman logs "$name" 2>&1 | tail -n 1
podman rm "$name" >/dev/null
checkpoints=$(find "$RUNS/stopped/quickstart/checkpoints" -maxdepth 1 -name 'step_*' -printf '%f ' 2>/dev/null)
if [ "$code" = 75 ] && [ -n "$checkpoints" ]; then
    result "exit code 75, checkpoints: $checkpoints"
else
    fail "exit code $code, checkpoints: ${checkpoints:-none}"
fi
set +e
run -v "$RUNS/stopped:/app/runs" "$TAG" recipes/quickstart.toml --set train.epochs=6 --resume auto \
    >"$RUNS/resumed.log" 2>&1
code=$?
set -e
grep -m 1 "resumed from" "$RUNS/resumed.log" || true
tail -n 1 "$RUNS/resumed.log"
if [ "$code" = 0 ] && [ -f "$RUNS/stopped/quickstart/model.safetensors" ]; then
    result "resumed: exit code 0"
else
    fail "resume: exit code $code"
fi

step "summary"
if [ "$ok" = 0 ]; then result "the image works as shipped (runs in $RUNS)"; else result "FAILED (runs in $RUNS)"; fi
exit "$ok"
