"""TF Serving warmup records for an export, encoded without tensorflow-serving-api.

An export's `assets.extra/tf_serving_warmup_requests` is a TFRecord of PredictionLog
messages that TF Serving replays at every model load. The protobuf is written here by
hand (a few length-delimited fields), so exporting needs no tensorflow-serving-api;
the tests parse the records with the official protos.
"""
import numpy as np
import tensorflow as tf

from magenta_style import config

WARMUP_FILENAME = "tf_serving_warmup_requests"
DEFAULT_MODEL_NAME = config.SERVED_MODEL_NAME
# Side of the square warmup image: big enough to initialise every kernel, small enough
# to keep the export light (one float record is 3 * 4 * side^2 bytes).
DEFAULT_WARMUP_SIZE = 64
# Largest warmup side: one float record is 12 * side^2 bytes (12 MB at 1024) and TF
# Serving runs it at every model load; 20000 once allocated 4.5 GiB while exporting.
MAX_WARMUP_SIZE = 1024


def _varint(value):
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(field_number, payload):
    """One protobuf field of wire type 2 (bytes, string or sub-message)."""
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def predict_request_bytes(inputs, signature_name, model_name=DEFAULT_MODEL_NAME):
    """Serialises a tensorflow.serving.PredictRequest.

    Field numbers are those of tensorflow_serving/apis/predict.proto and model.proto:
    PredictRequest.model_spec = 1, .inputs = 2 (map<string, TensorProto>: entry key = 1,
    value = 2); ModelSpec.name = 1, .signature_name = 3.

    Args:
      inputs: dict str -> numpy array (object arrays of bytes for strings).
      signature_name: str.
      model_name: str.

    Returns:
      bytes.
    """
    spec = (_length_delimited(1, model_name.encode()) +
            _length_delimited(3, signature_name.encode()))
    message = _length_delimited(1, spec)
    for key in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[key]).SerializeToString()
        entry = _length_delimited(1, key.encode()) + _length_delimited(2, tensor)
        message += _length_delimited(2, entry)
    return message


def prediction_log_bytes(request_bytes):
    """Wraps serialised PredictRequest bytes in PredictionLog{predict_log (6){request (1)}}."""
    return _length_delimited(6, _length_delimited(1, request_bytes))


def warmup_inputs(num_styles, size=DEFAULT_WARMUP_SIZE):
    """Representative requests: {signature_name: inputs} for the two main signatures.

    The image is a smooth colour ramp of size x size; the weights select style 0.
    """
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :],
                                         0.5 * np.ones((size, size), np.float32)), axis=-1)
    weights = np.zeros([1, num_styles], np.float32)
    weights[0, 0] = 1.0
    png = tf.io.encode_png(tf.cast(tf.round(image * 255.0), tf.uint8)).numpy()
    return {
        "serving_default": {"image": image[None], "style_weights": weights},
        "serving_bytes": {"image_bytes": np.array([png], dtype=object),
                          "style_weights": weights},
    }


def write_warmup_requests(path, num_styles, size=DEFAULT_WARMUP_SIZE,
                          model_name=DEFAULT_MODEL_NAME):
    """Writes TF Serving warmup requests (TFRecord of PredictionLog) to `path`."""
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in warmup_inputs(num_styles, size).items():
            request = predict_request_bytes(inputs, signature_name, model_name)
            writer.write(prediction_log_bytes(request))
