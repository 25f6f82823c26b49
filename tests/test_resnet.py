"""ResNet-50's port of torchvision's layout, against a plain-PyTorch ResNet-50 with torchvision's parameter
names (torchvision itself does not import beside the CPU torch wheel), random weights and random BatchNorm
statistics, in eval mode: the 2048-d features agree to 1e-4 of their scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from relrank.model.resnet import STAGES, ResNet50, from_torchvision
from relrank.model.weights import load_pretrained

from conftest import jit_features, ported_module, randomise_batchnorm

torch = pytest.importorskip("torch")
nn = torch.nn


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else None

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        cin = 64
        for s, (width, blocks, stride) in enumerate(STAGES, start=1):
            layers = []
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
            setattr(self, f"layer{s}", nn.Sequential(*layers))
        self.fc = nn.Linear(cin, 1000)

    def features(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for s in range(1, 5):
            x = getattr(self, f"layer{s}")(x)
        return x.mean(dim=(2, 3))


def test_resnet50_torchvision_port_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    reference = randomise_batchnorm(Reference())
    tensors = {k: v.numpy() for k, v in reference.state_dict().items()}
    model = ported_module(lambda: ResNet50(rngs=nnx.Rngs(0)), from_torchvision(tensors))
    images = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference.features(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(jit_features(model, jnp.asarray(images)))
    assert got.shape == expected.shape == (2, 2048)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), np.abs(got - expected).max()
    torch.save(reference.state_dict(), tmp_path / "resnet50.pth")  # the file users have ports to the same
    pretrained = load_pretrained(str(tmp_path / "resnet50.pth"), "resnet50")
    assert pretrained.layout == "torchvision" and pretrained.preprocessing.mean == (0.485, 0.456, 0.406)
    for a, b in zip(jax.tree.leaves(pretrained.params), jax.tree.leaves(from_torchvision(tensors))):
        np.testing.assert_array_equal(a, b)
