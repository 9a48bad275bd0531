"""``import vqnat`` is cheap and fairseq still always sees vqnat's plugins, whatever is imported first."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = ("from fairseq.models import ARCH_MODEL_REGISTRY as A\n"
         "from fairseq.tasks import TASK_REGISTRY as T\n"
         "from fairseq.criterions import CRITERION_REGISTRY as C\n"
         "from fairseq import checkpoint_utils\n"
         "assert {'vqnat_lt_tiny', 'vqnat_image_vqvae_tiny'} <= set(A), 'models'\n"
         "assert {'vqnat_translation', 'vqnat_image'} <= set(T), 'tasks'\n"
         "assert 'vqnat_latent_transformer_loss' in C, 'criterions'\n"
         "assert checkpoint_utils.PathManager.atomic_copies\n"
         "print('ok')\n")


@pytest.mark.parametrize("first", [
    "import sys, vqnat; assert 'fairseq' not in sys.modules and 'torch' not in sys.modules",
    "import fairseq, vqnat",
    "from vqnat.models.latent_transformer import LatentTransformerModel",
])
def test_plugins_registered_whatever_comes_first(first):
    result = subprocess.run([sys.executable, "-c", first + "\n" + CHECK], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
