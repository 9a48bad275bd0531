"""The paper-size presets resolve, through fairseq's own parser, to tensor2tensor's transformer_nat_base/_big."""

import pytest


def parsed(arch: str, *extra: str):
    from fairseq import options

    from vqnat.pipeline.fairseq_run import USER_DIR

    argv = ["data-bin", "--user-dir", USER_DIR, "--task", "vqnat_translation", "--arch", arch,
            "--criterion", "vqnat_latent_transformer_loss", *extra]
    return options.parse_args_and_arch(options.get_training_parser(), argv)


@pytest.mark.parametrize(("arch", "expected"), [
    ("vqnat_lt_base", {"embed_dim": 512, "ffn_dim": 4096, "prior_layers": 6}),
    ("vqnat_lt_big", {"embed_dim": 1024, "attention_heads": 16, "prior_layers": 6, "dropout": 0.3}),
])
def test_paper_presets(arch, expected):
    args = parsed(arch)
    assert {name: getattr(args, name) for name in expected} == expected


def test_options_given_on_the_command_line_win_over_a_preset():
    args = parsed("vqnat_lt_big", "--dropout", "0.2", "--prior-layers", "2")
    assert (args.dropout, args.prior_layers) == (0.2, 2)
