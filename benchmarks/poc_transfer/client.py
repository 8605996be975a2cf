"""Benchmark client: adds 1 to every array in place and sends the arrays back."""

import ember.client as flare


def main() -> None:
    flare.init()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        for array in model.params.values():
            array += 1
        flare.send(model)


main()
