"""The ClientApp: trains the received model on this node's partition of the digits."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from hello_flower.task import load_partition, loss_and_accuracy, train

app = ClientApp()


def _data(context: Context):  # type: ignore[no-untyped-def]
    return load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )


@app.train()
def local_train(msg: Message, context: Context) -> Message:
    weights = msg.content["arrays"].to_numpy_ndarrays()
    x, y = _data(context)
    new = train(
        weights,
        x,
        y,
        int(context.run_config["local-epochs"]),
        float(context.run_config["learning-rate"]),
    )
    loss, acc = loss_and_accuracy(new, x, y)
    content = RecordDict(
        {
            "arrays": ArrayRecord(new),
            "metrics": MetricRecord(
                {"train_loss": loss, "train_accuracy": acc, "num-examples": len(y)}
            ),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def local_evaluate(msg: Message, context: Context) -> Message:
    weights = msg.content["arrays"].to_numpy_ndarrays()
    x, y = _data(context)
    loss, acc = loss_and_accuracy(weights, x, y)
    metrics = MetricRecord({"eval_loss": loss, "eval_accuracy": acc, "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
