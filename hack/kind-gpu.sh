#!/usr/bin/env bash
# Give a kind cluster's workers fake GPUs: nvidia.com/gpu capacity (status patch, as a device plugin
# would advertise it) and the labels NVIDIA's GPU feature discovery sets. Pool comes from the
# rightsizer.io/pool label that kind-config.yaml puts on each worker.
set -euo pipefail
KUBECTL="${KUBECTL:-kubectl}"
command -v "$KUBECTL" >/dev/null || KUBECTL="${RIGHTSIZER_CACHE_DIR:-$HOME/.cache/gpu-rightsizer}/bin/kubectl"

gpu_shape() { # pool -> "count product memoryMiB"
  case "$1" in
    a100) echo "8 NVIDIA-A100-SXM4-80GB 81920" ;;
    l4) echo "4 NVIDIA-L4 23034" ;;
    *) echo "" ;;
  esac
}

for node in $("$KUBECTL" get nodes -l rightsizer.io/pool -o jsonpath='{.items[*].metadata.name}'); do
  pool="$("$KUBECTL" get node "$node" -o jsonpath='{.metadata.labels.rightsizer\.io/pool}')"
  shape="$(gpu_shape "$pool")"
  [ -n "$shape" ] || continue
  read -r count product mem <<<"$shape"
  "$KUBECTL" label node "$node" --overwrite "nvidia.com/gpu.product=$product" "nvidia.com/gpu.memory=$mem" \
    "nvidia.com/gpu.count=$count" >/dev/null
  "$KUBECTL" patch node "$node" --subresource=status --type=merge \
    -p "{\"status\":{\"capacity\":{\"nvidia.com/gpu\":\"$count\"},\"allocatable\":{\"nvidia.com/gpu\":\"$count\"}}}" >/dev/null
  echo "[kind-gpu] $node: $count x $product"
done
