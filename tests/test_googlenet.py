"""GoogLeNet's port of torchvision's layout, against a plain-PyTorch GoogLeNet with torchvision's parameter names
(torchvision does not import beside the CPU torch wheel; its aux classifiers are left out), random weights and
random BatchNorm statistics, in eval mode, at a size where the ceil-mode pools round up: the 1024-d features agree
to 1e-4 of their scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from relrank.model.googlenet import BLOCKS, GoogLeNet, from_torchvision
from relrank.model.weights import load_pretrained

from conftest import jit_features, ported_module, randomise_batchnorm

torch = pytest.importorskip("torch")
nn = torch.nn


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, kernel_size=1), BasicConv2d(c3r, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, kernel_size=1), BasicConv2d(c5r, c5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, cp, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.stages = []
        for block in BLOCKS:
            if isinstance(block, str):
                self.stages.append(nn.MaxPool2d(3 if block == "pool" else 2, 2, ceil_mode=True))
            else:
                setattr(self, block[0], Inception(*block[1]))
                self.stages.append(getattr(self, block[0]))
        self.fc = nn.Linear(1024, 1000)

    def features(self, x):
        x = nn.functional.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.conv3(self.conv2(x)), 3, 2, ceil_mode=True)
        for stage in self.stages:
            x = stage(x)
        return x.mean(dim=(2, 3))


def test_googlenet_torchvision_port_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    reference = randomise_batchnorm(Reference())
    tensors = {k: v.numpy() for k, v in reference.state_dict().items()}
    assert "inception4e.branch4.1.conv.weight" in tensors and "inception3a.branch2.1.bn.running_var" in tensors
    model = ported_module(lambda: GoogLeNet(rngs=nnx.Rngs(0)), from_torchvision(tensors))
    images = np.random.default_rng(0).normal(size=(2, 3, 96, 96)).astype(np.float32)  # pools round 47/23/11/5 up
    with torch.no_grad():
        expected = reference.features(torch.from_numpy(images)).numpy()
    got = np.asarray(jit_features(model, jnp.asarray(images.transpose(0, 2, 3, 1))))
    assert got.shape == expected.shape == (2, 1024)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), np.abs(got - expected).max()
    torch.save(reference.state_dict(), tmp_path / "googlenet.pth")  # the file users have ports to the same
    pretrained = load_pretrained(str(tmp_path / "googlenet.pth"), "googlenet")
    assert pretrained.preprocessing.mean == (0.5, 0.5, 0.5) == pretrained.preprocessing.std  # transform_input's
    for a, b in zip(jax.tree.leaves(pretrained.params), jax.tree.leaves(from_torchvision(tensors))):
        np.testing.assert_array_equal(a, b)
