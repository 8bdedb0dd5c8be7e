#!/usr/bin/env bash
# `make images`: build the CPU image and the lean predictor image from docker/Dockerfile.
# `make images-cuda` (FLAVOR=cuda, TORCH_VARIANT and TORCH_INDEX set): the CUDA image for the
# sequence-training step, the same Dockerfile with torch's CUDA build.
#
# Tags: ml-cloud-optimizer:local and ml-cloud-optimizer-predictor:local (what `mlco run --runner
# docker` and the container tests use), plus the release tags the pipeline settings name.
# Works on a normal machine (official base, PyPI and the PyTorch index) and on these closed ones:
#   - the base: $BASE_IMAGE, else python:3.11-slim-bookworm when it is here or can be pulled, else
#     the Debian-built stand-in from tools/build_base_image.sh;
#   - the torch wheel: copied into docker/wheels/ from pip's own find-links folder when it has one;
#   - the host's CA bundle reaches pip as a BuildKit secret (never a layer);
#   - kfp is pinned to the host venv's version, so kfp.local's DockerRunner needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

docker=${DOCKER:-/usr/bin/docker}            # Debian's client: BuildKit without buildx
python=${PYTHON:-.venv/bin/python}
torch_version=${TORCH_VERSION:-2.13.0}
torch_variant=${TORCH_VARIANT:-cpu}
flavor=${FLAVOR:-cpu}
version=$("$python" -c 'import ml_cloud_optimizer; print(ml_cloud_optimizer.__version__)')
kfp_version=$("$python" -c 'import kfp; print(kfp.__version__)')
registry=${REGISTRY:-ghcr.io/mlco}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
export DOCKER_BUILDKIT=1

"$docker" info >/dev/null 2>&1 || { echo "no Docker daemon answers: start dockerd (see tools/start_docker.sh)" >&2; exit 2; }

official=python:3.11-slim-bookworm
standin=mlco-base:python3.11-bookworm
if [ -n "${BASE_IMAGE:-}" ]; then base=$BASE_IMAGE
elif "$docker" image inspect "$official" >/dev/null 2>&1; then base=$official
elif "$docker" image inspect "$standin" >/dev/null 2>&1; then base=$standin
elif timeout 60 "$docker" pull -q "$official" >/dev/null 2>&1; then base=$official
else
  echo "Docker Hub cannot be reached: building the stand-in base $standin from Debian's packages"
  bash tools/build_base_image.sh "$standin"
  base=$standin
fi

find_links=$("$python" -m pip config get global.find-links 2>/dev/null || true)
for folder in $find_links ${PIP_FIND_LINKS:-}; do
  wheel=$(ls "$folder"/torch-"$torch_version"+cpu-cp311-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$wheel" ] && [ ! -e "docker/wheels/$(basename "$wheel")" ]; then cp "$wheel" docker/wheels/; fi
done

args=(--build-arg "BASE_IMAGE=$base" --build-arg "KFP_VERSION=$kfp_version" --build-arg "TORCH_VERSION=$torch_version"
      --build-arg "TORCH_VARIANT=$torch_variant")
# With the wheel at hand the PyTorch index is not asked at all (it may be unreachable, and pip
# would ask it, with retries, for every package).
if [ -n "${TORCH_INDEX+set}" ]; then args+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
elif ls docker/wheels/torch-"$torch_version+$torch_variant"-*.whl >/dev/null 2>&1; then args+=(--build-arg TORCH_INDEX=); fi
[ -s "$ca_bundle" ] && args+=(--secret "id=ca_bundle,src=$ca_bundle")

echo "building on $base (kfp $kfp_version, torch $torch_version+$torch_variant)"
started=$(date +%s)
if [ "$flavor" = cuda ]; then
  "$docker" build "${args[@]}" -f docker/Dockerfile --target runtime \
    -t ml-cloud-optimizer-cuda:local -t "$registry/ml-cloud-optimizer-cuda:$version" .
  exit 0
fi
"$docker" build "${args[@]}" -f docker/Dockerfile --target runtime \
  -t ml-cloud-optimizer:local -t "$registry/ml-cloud-optimizer:$version" .
"$docker" build "${args[@]}" -f docker/Dockerfile --target predictor \
  -t ml-cloud-optimizer-predictor:local -t "$registry/ml-cloud-optimizer-predictor:$version" .
echo "built in $(( $(date +%s) - started )) s:"
for ref in ml-cloud-optimizer:local ml-cloud-optimizer-predictor:local; do
  echo "  $ref $(( $("$docker" image inspect -f '{{.Size}}' "$ref") / 1000000 )) MB"
done
