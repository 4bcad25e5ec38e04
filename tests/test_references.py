"""Reference tests (micrograd's habit): genlib's batched pieces against torch's own modules."""
import numpy as np
import torch
from torch import nn

from genlib.core.data import modular_arithmetic
from genlib.core.models import Transformer
from genlib.core.train import TrainConfig, train


def reference_transformer(model: Transformer, member: int) -> nn.Module:
    """Member ``member`` of a genlib Transformer rebuilt from torch modules (its weights copied)."""
    d = model.embed.shape[-1]
    take = lambda t: t[member].detach().double()  # noqa: E731

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding.from_pretrained(take(model.embed))
            self.pos = take(model.pos)
            self.attention = nn.MultiheadAttention(d, model.heads, bias=False, batch_first=True).double()
            # genlib computes x @ w (heads contiguous blocks of d_head); torch computes x @ W^T
            w_qkv = [take(w).reshape(d, d).T for w in (model.w_q, model.w_k, model.w_v)]
            self.attention.in_proj_weight.data = torch.cat(w_qkv)
            self.attention.out_proj.weight.data = take(model.w_o).reshape(d, d).T.contiguous()
            self.mlp_in = nn.Linear(d, take(model.w_in).shape[1]).double()
            self.mlp_in.weight.data, self.mlp_in.bias.data = take(model.w_in).T, take(model.b_in)[0]
            self.mlp_out = nn.Linear(take(model.w_out).shape[0], d).double()
            self.mlp_out.weight.data, self.mlp_out.bias.data = take(model.w_out).T, take(model.b_out)[0]
            self.unembed = take(model.unembed)

        def forward(self, pairs):  # pairs (B, 2) -> logits (B, p) at the "=" position
            tokens = torch.cat([pairs, torch.full_like(pairs[:, :1], model.p)], 1)
            x = self.embed(tokens) + self.pos
            attended, _ = self.attention(x[:, -1:], x, x, need_weights=False)
            h = x[:, -1] + attended[:, 0]
            h = h + self.mlp_out(torch.relu(self.mlp_in(h)))
            return h @ self.unembed

    return Reference()


def test_transformer_matches_torch_attention_and_linear_layers_per_member():
    p = 7
    model = Transformer(p, [3, 11], d_model=16, heads=4, d_mlp=32).double()
    with torch.no_grad():  # non-zero biases, so that their layout is checked too
        model.b_in.normal_()
        model.b_out.normal_()
    pairs = torch.randint(0, p, (2, 20, 2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(pairs)
        for member in range(2):
            expected = reference_transformer(model, member)(pairs[member])
            torch.testing.assert_close(out[member], expected, atol=1e-10, rtol=1e-10,
                                       msg=f"member {member} differs from torch's modules")
    assert not torch.allclose(out[0], out[1]), "members with different seeds are different networks"


def test_float64_training_trains_float64_parameters():
    data = modular_arithmetic(7, "+", 0.5, [0])
    model = Transformer(7, [0], d_model=8, heads=2, d_mlp=16)
    history = train(model, data, TrainConfig(steps=2, dtype="float64", device="cpu"))
    dtypes = {p.dtype for p in model.parameters()}
    assert dtypes == {torch.float64}, f"parameters trained in {dtypes}, expected float64"
    assert np.isfinite(history["train_loss"]).all()
