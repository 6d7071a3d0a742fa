"""Drive a real CARLA 0.9.16 server through the simulator contract and record one clip.

Start a server first (on the same machine, or pass --host):
    ./CarlaUE4.sh -RenderOffScreen              # listens on port 2000, traffic manager on 8000
Then:
    pip install -e ".[carla]"
    python examples/carla_quickstart.py --town Town02 --frames 20 --out data/carla_clips

The ego drives on the traffic manager's autopilot; every tick gives RGB, 22-class labels and
depth from three aligned cameras, matched to the tick by frame number.
"""

from __future__ import annotations

import argparse

from carla_gym.cli import HelpFormatter
from carla_gym.recording import ClipWriter, clip_is_complete
from carla_gym.sim import CarlaBackend, Control, make_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=2000)
    parser.add_argument("--town", default="Town02")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--out", default="data/carla_clips")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    clip = f"quickstart_{args.seed:03d}"
    if clip_is_complete(args.out, args.town, clip):
        print(f"{args.out}/{args.town}/{clip} already recorded")
        return
    try:
        sim = make_backend(
            "carla",
            host=args.host,
            port=args.port,
            town=args.town,
            size=(256, 512),
            autopilot=True,
            seed=args.seed,
            vehicles=30,
            walkers=20,
        )
    except ConnectionError as err:
        parser.exit(1, f"error: {err}\n")
    with sim:
        frame = sim.reset(seed=args.seed)
        for _ in range(20):  # let the car get going before recording
            frame = sim.step(Control())
        with ClipWriter(
            args.out,
            args.town,
            clip,
            backend="carla",
            fov=90.0,
            split=CarlaBackend.split_of(args.town),
            fixed_delta_seconds=sim.fixed_delta_seconds,
            seed=args.seed,
        ) as writer:
            for _ in range(args.frames):
                frame = sim.step(Control())
                writer.write(frame)
                if frame.events:
                    print(f"frame {frame.frame}: {', '.join(map(str, frame.events))}")
        print(
            f"recorded {args.frames} frames to {writer.path}; speed {frame.speed:.1f} m/s, "
            f"{frame.route.distance_left:.0f} m of route left"
        )


if __name__ == "__main__":
    main()
