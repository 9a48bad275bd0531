"""Behaviour of the latent transformer: lengths, causality of the prior, parallel decoding, overfitting."""

from __future__ import annotations

import pytest
import torch

from tests.models.conftest import encode_batch, tiny_model
from vqnat.criterions.latent_transformer_loss import latent_terms
from vqnat.modules.compression import Compressor, Decompressor


@pytest.mark.parametrize("length", [1, 5, 8, 13, 31])
def test_compress_then_decompress_returns_target_length(word_dict, length):
    torch.manual_seed(0)
    model = tiny_model(word_dict, compress_steps=3).eval()
    src = torch.randint(4, len(word_dict), (2, 6))
    tgt = torch.randint(4, len(word_dict), (2, length))
    tgt[:, -1] = word_dict.eos()
    out = model(src, torch.tensor([6, 6]), tgt)
    padded = out.token_logits.shape[1]
    assert padded % 8 == 0 and padded >= length
    assert out.prior_logits.shape[1] == padded // 8
    assert torch.equal(out.token_targets[:, :length], tgt)  # the real target is inside, EOS included
    assert (out.token_targets[:, length:] == word_dict.pad()).all()
    # The modules alone: every multiple of 2^nc survives the round trip; others are refused clearly.
    c, dcmp = Compressor(32, 3, 0.0), Decompressor(32, 3, 0.0)
    assert dcmp(c(torch.randn(2, 8 * 3, 32))).shape == (2, 24, 32)
    with pytest.raises(ValueError, match="multiple"):
        c(torch.randn(2, 13, 32))


def test_target_length_follows_the_ratio_rule(word_dict):
    model = tiny_model(word_dict, length_ratio=2.0, length_offset=3)
    src_len = torch.tensor([1, 5, 10])
    assert model.target_lengths(src_len).tolist() == [8, 16, 24]  # ceil((2s + 3) / 8) * 8
    assert model.target_lengths(src_len, torch.tensor([40, 1, 1])).tolist() == [40, 16, 24]


def test_length_predictor_sets_the_padded_length(word_dict):
    model = tiny_model(word_dict, length_predictor=True, length_offset=2).eval()
    src_len = torch.tensor([3, 20])
    # Training: |y| + offset, rounded up to a multiple of 2^nc, whatever the source length.
    assert model.target_lengths(src_len, torch.tensor([6, 7])).tolist() == [8, 16]
    # Inference: the predicted class + offset, at most ratio * |x| + offset. Force the predictor to say 13 and 30.
    logits = torch.full((2, 256), -10.0)
    logits[0, 13], logits[1, 30] = 10.0, 10.0
    assert model.target_lengths(src_len, length_logits=logits).tolist() == [8, 32]  # min(13, 2*3)+2 -> 8; 30+2 -> 32
    with pytest.raises(ValueError, match="length_logits"):
        model.target_lengths(src_len)
    with torch.no_grad():
        model.length_out.weight.zero_()
        model.length_out.bias.fill_(-10.0)
        model.length_out.bias[21] = 10.0  # predicts 21 tokens for every source
    src, lengths = encode_batch(["In the beginning God created the heavens and the earth", "And God said"],
                                word_dict)  # 11 and 4 tokens: 21 + 2 -> 24 positions; capped at 2 * 4 + 2 -> 16
    assert model.translate(src, lengths).tokens.shape[1] == 24
    assert model.target_lengths(lengths, length_logits=model.predict_length_logits(*model.encode(src))).tolist() \
        == [24, 16]


def test_length_predictor_learns_real_target_lengths(real_pairs, word_dict):
    torch.manual_seed(0)
    pairs = real_pairs[:8]
    src, src_len = encode_batch([s for s, _ in pairs], word_dict)
    tgt, tgt_len = encode_batch([t for _, t in pairs], word_dict)
    model = tiny_model(word_dict, length_predictor=True, length_loss_weight=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        terms = latent_terms(model(src, src_len, tgt), label_smoothing=0.0)
        terms["loss"].backward()
        optimizer.step()
    assert terms["length_accuracy"] == 1.0, terms
    model.eval()
    enc, pad = model.encode(src)
    assert torch.equal(model.predict_length_logits(enc, pad).argmax(-1), tgt_len)
    without = latent_terms(tiny_model(word_dict)(src, src_len, tgt), label_smoothing=0.0)
    assert "length_loss" not in without  # no predictor, no term


def test_prior_is_causal(word_dict):
    torch.manual_seed(0)
    model = tiny_model(word_dict).eval()
    src, _ = encode_batch(["In the beginning"], word_dict)
    enc, pad = model.encode(src)
    codes = torch.randint(0, 32, (1, 6, 1))
    base = model.prior_logits(codes, enc, pad)
    changed = codes.clone()
    changed[0, 3] = (changed[0, 3] + 1) % 32
    after = model.prior_logits(changed, enc, pad)
    # Logits at positions <= 3 only see codes < their position: unchanged. Position 4 sees code 3: changed.
    torch.testing.assert_close(after[:, :4], base[:, :4])
    assert not torch.allclose(after[:, 4], base[:, 4])


@pytest.mark.parametrize(("prior_dropout", "expected"), [(None, 0.2), (0.5, 0.5)])
def test_prior_dropout_defaults_to_the_models_and_touches_only_the_prior(word_dict, prior_dropout, expected):
    model = tiny_model(word_dict, dropout=0.2, prior_dropout=prior_dropout)
    prior_rates = {m.p for m in model.prior.modules() if isinstance(m, torch.nn.Dropout)}
    others = {m.p for name, m in model.named_modules()
              if isinstance(m, torch.nn.Dropout) and not name.startswith("prior")}
    assert prior_rates == {expected} and others == {0.2}
    # In training the rate shows: with p = 0.5 about half of the prior's input is zeroed.
    model.train()
    src, _ = encode_batch(["In the beginning"], word_dict)
    enc, pad = model.encode(src)
    codes = torch.randint(0, 32, (4, 50, 1))
    seen = []
    model.prior.dropout.register_forward_hook(lambda _m, _i, out: seen.append(out))
    model.prior_logits(codes, enc.expand(4, -1, -1), pad.expand(4, -1))
    assert abs(float(seen[0].eq(0).float().mean()) - expected) < 0.05


def test_decoder_is_one_parallel_pass(word_dict):
    torch.manual_seed(0)
    model = tiny_model(word_dict).eval()
    calls = []
    model.decoder.register_forward_hook(lambda *args: calls.append(1))
    src, lengths = encode_batch(["In the beginning God created", "And God said"], word_dict)
    out = model.translate(src, lengths)
    assert len(calls) == 1  # all target tokens from a single decoder call
    assert out.tokens.shape[1] == int(model.target_lengths(lengths).max())
    # Each output depends only on the latents and the source: decoding the same codes again gives the same tokens.
    enc, pad = model.encode(src)
    latents = model.bottleneck.codebook.lookup(out.codes.flatten(0, 1)).reshape(*out.codes.shape[:2], -1)
    again = model.decode(latents, model.target_lengths(lengths), enc, pad).argmax(-1)
    kept = out.tokens.ne(word_dict.pad())
    assert torch.equal(again[kept], out.tokens[kept])


def test_left_and_right_padded_sources_agree(word_dict):
    torch.manual_seed(0)
    model = tiny_model(word_dict).eval()
    sentences = ["In the beginning God created the heavens", "And God said"]
    right, lengths = encode_batch(sentences, word_dict)
    left, _ = encode_batch(sentences, word_dict, left_pad=True)
    a, b = model.translate(right, lengths), model.translate(left, lengths)
    assert torch.equal(a.tokens, b.tokens)


def test_too_long_source_is_a_clear_error(word_dict):
    model = tiny_model(word_dict, max_source_positions=8)
    src = torch.full((1, 9), 5)
    with pytest.raises(ValueError, match="max_source_positions"):
        model.translate(src, torch.tensor([9]))


@pytest.mark.parametrize("bottleneck", ["hard", "soft"])
def test_overfits_real_pairs_and_prior_learns_the_latents(real_pairs, word_dict, bottleneck):
    torch.manual_seed(0)
    pairs = real_pairs[:4]
    src, src_len = encode_batch([s for s, _ in pairs], word_dict)
    tgt, _ = encode_batch([t for _, t in pairs], word_dict)
    model = tiny_model(word_dict, embed_dim=64, ffn_dim=128, codebook_size=16, bottleneck=bottleneck,
                       num_samples=4, softmax_temperature=0.5, codebook_decay=0.9, length_ratio=1.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        optimizer.zero_grad()
        terms = latent_terms(model(src, src_len, tgt), label_smoothing=0.0)
        terms["loss"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        final = latent_terms(model(src, src_len, tgt), label_smoothing=0.0)
    assert final["token_accuracy"] > 0.97, final
    assert final["prior_accuracy"] > 0.9, final
    # End to end: prior-decoded latents give back the (memorised) German verse.
    out = model.translate(src, src_len)
    for b, (_, german) in enumerate(pairs):
        words = [word_dict[int(t)] for t in out.tokens[b, : int(out.lengths[b]) - 1]]
        overlap = sum(w == g for w, g in zip(words, german.split(), strict=False)) / len(german.split())
        assert overlap > 0.8, (" ".join(words), german)


def test_decoder_gold_mix_decays_to_zero_and_is_off_at_inference(word_dict):
    model = tiny_model(word_dict, decoder_gold_mix_updates=100)
    probabilities = []
    for updates in (0, 50, 100, 200):
        model.set_num_updates(updates)
        probabilities.append(model._gold_mix_probability())
    assert probabilities == [1.0, 0.5, 0.0, 0.0]
    model.set_num_updates(0)
    x, gold = torch.zeros(2, 16, 32), torch.ones(2, 16, 32)
    latents = torch.zeros(2, 2, 32)
    enc, pad = model.encode(torch.tensor([[5, 6, word_dict.eos()]] * 2))
    # Probability 1: every decoder input is the gold embedding, so the latents cannot matter.
    model.eval()
    a = model.decode(latents, torch.tensor([16, 16]), enc, pad, gold=gold)
    b = model.decode(latents + 5.0, torch.tensor([16, 16]), enc, pad, gold=gold)
    torch.testing.assert_close(a, b)
    assert model._gold_mix_mask(x).all()
    # translate() never passes gold embeddings: off at inference.
    out = model.translate(torch.tensor([[5, 6, word_dict.eos()]]), torch.tensor([3]))
    assert out.tokens.shape[0] == 1


def test_generator_drops_padding_predicted_before_eos(word_dict):
    from vqnat.generation import LatentTransformerGenerator
    from vqnat.models.latent_transformer import Translation

    pad, eos = word_dict.pad(), word_dict.eos()
    tokens = torch.tensor([[7, pad, 8, pad, eos, pad, pad, pad]])

    class Fixed:
        def translate(self, src_tokens, src_lengths, **length_rule):
            return Translation(tokens, torch.zeros(1, 8), torch.tensor([5]), torch.zeros(1, 1, 1, dtype=torch.long))

    hypos = LatentTransformerGenerator(word_dict).generate(
        [Fixed()], {"net_input": {"src_tokens": tokens, "src_lengths": torch.tensor([8])}})
    assert hypos[0][0]["tokens"].tolist() == [7, 8, eos]
    assert "<pad>" not in word_dict.string(hypos[0][0]["tokens"])


def _teacher_forced_greedy(model, enc, pad, num_latents):
    """Reference: re-run the whole prefix through the teacher-forced prior at every step."""
    codes = torch.zeros(enc.shape[0], 0, 1, dtype=torch.long)
    for _ in range(num_latents):
        step = torch.cat([codes, codes.new_zeros(enc.shape[0], 1, 1)], dim=1)
        codes = torch.cat([codes, model.prior_logits(step, enc, pad)[:, -1].argmax(-1).unsqueeze(1)], dim=1)
    return codes


def _prior_log_prob(model, codes, enc, pad, num_latents):
    log_probs = model.prior_logits(codes, enc, pad).log_softmax(-1)  # (B, L, 1, K)
    picked = log_probs.gather(-1, codes.unsqueeze(-1)).squeeze(-1).squeeze(-1)  # (B, L)
    keep = torch.arange(codes.shape[1]).unsqueeze(0) < num_latents.unsqueeze(1)
    return (picked * keep).sum(1)


def test_cached_prior_decoding_matches_the_teacher_forced_prior(word_dict):
    torch.manual_seed(0)
    model = tiny_model(word_dict, prior_layers=2, codebook_size=16).eval()
    src, _ = encode_batch(["In the beginning God created the heavens", "And God said"], word_dict, left_pad=True)
    enc, pad = model.encode(src)
    with torch.no_grad():
        cached = model.prior.greedy(7, enc, pad)
        assert torch.equal(cached, _teacher_forced_greedy(model, enc, pad, 7))


def test_latent_beam_search_finds_sequences_the_prior_prefers(word_dict):
    torch.manual_seed(0)
    model = tiny_model(word_dict, prior_layers=2, codebook_size=16).eval()
    src, lengths = encode_batch(["In the beginning God created the heavens", "And God said"], word_dict)
    enc, pad = model.encode(src)
    num_latents = torch.tensor([6, 3])
    with torch.no_grad():
        greedy = model.prior.greedy(6, enc, pad)
        one, one_score = model.prior.beam(num_latents, 1, enc, pad)
        codes, scores = model.prior.beam(num_latents, 4, enc, pad)
        assert torch.equal(one[:, 0, :3], greedy[:, :3]) and torch.equal(one[0, 0], greedy[0])  # beam 1 = greedy
        assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
        assert (codes[1, :, 3:] == 0).all()  # past a sentence's own latents: code 0
        for i in range(4):  # the scores are the prior's log-probabilities of the returned sequences
            torch.testing.assert_close(scores[:, i], _prior_log_prob(model, codes[:, i], enc, pad, num_latents))
        assert (scores[:, 0] >= one_score[:, 0] - 1e-5).all()  # a wider beam never finds a worse best sequence
        assert len({tuple(c.flatten().tolist()) for c in codes[0]}) == 4  # distinct hypotheses
        out = model.translate(src, lengths, latent_beam=4)
        tokens, _, _, cand_codes, _ = model.translate_candidates(src, lengths, 4)
    assert torch.equal(out.tokens, tokens[:, 0]) and torch.equal(out.codes, cand_codes[:, 0])
    with pytest.raises(ValueError, match="slices"):
        tiny_model(word_dict, codebook_slices=2).eval().translate(src, lengths, latent_beam=2)


def test_weights_saved_before_the_prior_was_a_module_load_and_translate_the_same(word_dict):
    """Old key names (prior_embed.*, prior.layers.*, prior.norm.*, prior_out.*) are upgraded on load."""
    from vqnat.models.latent_transformer import PRIOR_KEY_RENAMES

    torch.manual_seed(0)
    model = tiny_model(word_dict).eval()
    old_keys = {}
    for key, value in model.state_dict().items():
        for old, new in PRIOR_KEY_RENAMES:
            if key.startswith(new):
                key = old + key[len(new):]
                break
        old_keys[key] = value
    assert "prior_embed.weight" in old_keys and "prior_out.weight" in old_keys
    torch.manual_seed(1)
    fresh = tiny_model(word_dict).eval()
    fresh.load_state_dict(old_keys)  # fairseq's load_state_dict upgrades first; strict
    src, lengths = encode_batch(["In the beginning God created the heavens", "And God said"], word_dict)
    assert torch.equal(fresh.translate(src, lengths).tokens, model.translate(src, lengths).tokens)


def test_translate_decodes_given_codes_and_overrides_lengths_per_call(word_dict):
    torch.manual_seed(0)
    model = tiny_model(word_dict, codebook_size=16).eval()
    src, lengths = encode_batch(["In the beginning God created the heavens", "And God said"], word_dict)
    out = model.translate(src, lengths)
    again = model.translate(src, lengths, codes=out.codes)  # the prior's own codes: the same translation
    assert torch.equal(again.tokens, out.tokens)
    other = torch.randint(0, 16, out.codes.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(model.translate(src, lengths, codes=other).codes, other)
    with pytest.raises(ValueError, match="cannot be read"):
        model.translate(src, lengths, codes=out.codes[:, :1])
    cfg_before = (model.cfg.length_ratio, model.cfg.length_offset)
    longer = model.translate(src, lengths, length_offset=16)
    assert longer.tokens.shape[1] >= out.tokens.shape[1] + 16 - model.factor
    assert (model.cfg.length_ratio, model.cfg.length_offset) == cfg_before  # the call changes no setting


def test_refinement_reads_the_output_as_training_reads_a_target(word_dict):
    """refine(y^) = the decoder's argmax given the autoencoder's codes of y^: with y^ = a target, exactly the
    teacher-forced training pass in eval mode (nearest codes), cut at its first EOS."""
    from vqnat.models.latent_transformer import Translation

    torch.manual_seed(0)
    model = tiny_model(word_dict, codebook_size=16).eval()
    src, src_lengths = encode_batch(["In the beginning God created the heavens", "And God said"], word_dict)
    target, target_lengths = encode_batch(["Im Anfang schuf Gott", "Und Gott sprach es werde Licht"], word_dict)
    enc, enc_pad = model.encode(src)
    with torch.no_grad():
        given = Translation(target, torch.zeros(target.shape), target_lengths, torch.zeros(2, 1, 1, dtype=torch.long))
        refined = model.refine(given, src_lengths, enc, enc_pad)
        forward = model(src, src_lengths, target)
    expected = forward.token_logits.argmax(-1).masked_fill(~forward.token_mask, word_dict.pad())
    for row, (tokens, length) in enumerate(zip(refined.tokens, refined.lengths, strict=True)):
        assert torch.equal(tokens[:length], expected[row, :length])
    steps = model.translate(src, src_lengths, refine_steps=2)
    once = model.translate(src, src_lengths, refine_steps=1)
    assert torch.equal(steps.tokens, model.refine(once, src_lengths, enc, enc_pad).tokens)
