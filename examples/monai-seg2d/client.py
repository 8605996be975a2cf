"""monai-seg2d client: a small MONAI UNet trained on MONAI's synthetic 2D images; Dice per round."""

import argparse

import numpy as np
import torch
from monai.data.synthetic import create_test_image_2d
from monai.losses import DiceLoss
from monai.metrics import DiceMetric
from monai.networks.nets import UNet

import ember.client as flare
from ember.client import FLModel


def make_unet() -> UNet:
    return UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,))


def images(n: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic images (noisy circles) and their masks, shaped (n, 1, size, size)."""
    rng = np.random.RandomState(seed)
    pairs = [create_test_image_2d(size, size, num_objs=3, rad_max=6, noise_max=0.2,
                                  random_state=rng) for _ in range(n)]
    x = np.stack([p[0] for p in pairs])[:, None].astype(np.float32)
    y = (np.stack([p[1] for p in pairs])[:, None] > 0).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def dice(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    metric = DiceMetric(include_background=True, reduction="mean")
    with torch.no_grad():
        metric((torch.sigmoid(model(x)) > 0.5).float(), y)
    return float(metric.aggregate().item())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()

    flare.init()
    site = flare.get_site_name()
    index = int(site.rsplit("-", 1)[-1])
    torch.set_num_threads(1)
    torch.manual_seed(index)
    x, y = images(16, seed=index, size=args.size)
    x_val, y_val = images(8, seed=100, size=args.size)
    model = make_unet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = DiceLoss(sigmoid=True)
    while flare.is_running():
        received = flare.receive()
        if received is None:
            break
        model.load_state_dict(received.params)
        metrics = {"dice": dice(model, x_val, y_val)}  # of the received global model
        if flare.is_evaluate():
            flare.send(FLModel(metrics=metrics))
            continue
        model.train()
        for step in range(args.steps):
            batch = torch.arange(step * 4, step * 4 + 4) % len(x)
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
        print(f"{site}: round {received.current_round}, dice of the global model "
              f"{metrics['dice']:.3f}")
        flare.send(FLModel(params=model.state_dict(), metrics=metrics,
                           current_round=received.current_round,
                           meta={flare.NUM_STEPS_CURRENT_ROUND: len(x)}))


if __name__ == "__main__":
    main()
