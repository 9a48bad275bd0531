#!/usr/bin/env bash
# Hard EM vs soft EM in the image VQ-VAE on Fashion-MNIST, at the same compute budget (CPU).
#
# Each run: vqnat_image_vqvae_tiny (7x7 latents, K = 64, D = 16), UPDATES Adam updates of 64 images (lr 1e-3),
# one thread; then bits/dim and codebook usage on the 10k test images, 36 samples from the latent prior and 16
# test reconstructions. Runs alternate hard/soft so that a busy machine slows both alike.
# Takes about 20 CPU minutes with the defaults (4 runs); results/image_vqvae_fashion_mnist.json and PNGs.
#
#   recipes/fashion_mnist_vqvae/run.sh                      # defaults: 600 updates, seeds 1 2
#   UPDATES=300 SEEDS=1 recipes/fashion_mnist_vqvae/run.sh  # a quick look
set -euo pipefail
cd "$(dirname "$0")/../.."

VQNAT=.venv/bin/vqnat
OUT=${OUT:-work/fashion_mnist_vqvae}
UPDATES=${UPDATES:-600}
SEEDS=${SEEDS:-"1 2"}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT"

for seed in $SEEDS; do
  for mode in hard soft; do
    run=$OUT/${mode}_seed${seed}
    nice -n 10 $VQNAT image train --dataset fashion-mnist --bottleneck "$mode" --arch tiny \
      --max-update "$UPDATES" --batch-size 64 --lr 1e-3 --seed "$seed" --max-eval-images 1000 --threads 1 \
      -s "$run" > "$run.train.log" 2>&1 || { tail -20 "$run.train.log"; exit 1; }
    nice -n 10 $VQNAT image evaluate -m "$run/checkpoint_last.pt" --split test --json "$run/test.json"
    nice -n 10 $VQNAT image sample -m "$run/checkpoint_last.pt" --num 36 --seed 0 -o "$run/samples.png"
    nice -n 10 $VQNAT image reconstruct -m "$run/checkpoint_last.pt" --num 16 -o "$run/reconstructions.png"
  done
done

.venv/bin/python recipes/fashion_mnist_vqvae/summarize.py "$OUT" --updates "$UPDATES" \
  --json results/image_vqvae_fashion_mnist.json --png-prefix results/image_vqvae_fashion_mnist
