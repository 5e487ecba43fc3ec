"""Modules with composite ops and hooks (LSTM, attention, checkpointing, a full backward hook, batch
norm, embedding, einsum, dropout): every autograd node is one a seen op made."""
import torch
from torch.utils.checkpoint import checkpoint


def build():
    rnn = torch.nn.LSTM(3, 4, batch_first=True)
    conv = torch.nn.Conv1d(4, 2, 3)
    bn = torch.nn.BatchNorm1d(2)
    emb = torch.nn.Embedding(10, 3)
    att = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    lin = torch.nn.Linear(4, 4)
    lin.register_full_backward_hook(lambda m, gi, go: None)
    x = emb(torch.tensor([[1, 2, 3, 4, 5]]))
    h, _ = rnn(x)
    h = checkpoint(lin, h, use_reentrant=False)
    h = checkpoint(lin, h, use_reentrant=True)
    a, _ = att(h, h, h)
    c = bn(conv(a.transpose(1, 2)))
    e = torch.einsum("bij,bij->", c, c)
    return e + torch.nn.functional.dropout(c, 0.3).sum(), rnn
