"""TensorFlow's notices that would bury the progress lines are dropped, and only those."""
import logging

from xmipp3_deepcons.core.tf_runtime import tf


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_retracing_notices_are_dropped_and_other_warnings_kept():
    collect = Collect()
    logger = tf.get_logger()
    logger.addHandler(collect)
    try:
        @tf.function
        def add_one(x):
            return x + 1

        for n in range(1, 9):          # a new shape each call: traced eight times
            add_one(tf.constant([1.0] * n))
        logger.warning("another warning")
    finally:
        logger.removeHandler(collect)
    assert not [m for m in collect.messages if "retracing" in m]
    assert "another warning" in collect.messages
