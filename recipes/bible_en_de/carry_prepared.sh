#!/usr/bin/env bash
# Copy what a GPU run of gpu_pipeline.py needs from prepared folders (vqnat prepare / vqnat distill) into one small
# folder that the device tool can carry: binarized data, manifest, sentencepiece model, raw valid/test text.
#   bash recipes/bible_en_de/carry_prepared.sh work/gpu-carry work/bible work/bible-distilled
set -euo pipefail
dest=$1
shift
for folder in "$@"; do
  name=$(basename "$folder")
  rm -rf "${dest:?}/$name"
  mkdir -p "$dest/$name/raw"
  cp -r "$folder/data-bin" "$folder/prepare.json" "$folder/spm.model" "$dest/$name/"
  cp "$folder"/raw/valid.* "$folder"/raw/test.* "$dest/$name/raw/"
done
du -sh "$dest"
