"""train_step.FusedAdam: Keras' Adam on TensorFlow's fused ResourceApplyAdam kernel."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from magenta_style.training import train_step


def _run(optimizer, steps=4, loss_scale=False):
    """Variables after `steps` updates of a small quadratic problem (two variables)."""
    rng = np.random.default_rng(0)
    variables = [tf.Variable(rng.normal(size=[3, 4]).astype(np.float32), name="a"),
                 tf.Variable(rng.normal(size=[5]).astype(np.float32), name="b")]
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(variables)

    @tf.function
    def step(k):
        with tf.GradientTape() as tape:
            loss = sum(tf.reduce_sum((v - tf.cast(k, tf.float32)) ** 2 * (i + 1))
                       for i, v in enumerate(variables))
            if loss_scale:
                loss = optimizer.scale_loss(loss)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    for k in range(steps):
        step(tf.constant(k))
    return [v.numpy() for v in variables], optimizer


@pytest.mark.parametrize("loss_scale", [False, True])
def test_fused_adam_follows_keras_adam(loss_scale):
    settings = dict(learning_rate=0.1, beta_1=train_step.ADAM_BETA_1,
                    beta_2=train_step.ADAM_BETA_2, epsilon=train_step.ADAM_EPSILON)
    got, fused = _run(train_step.FusedAdam(**settings), loss_scale=loss_scale)
    expected, keras_adam = _run(keras.optimizers.Adam(**settings), loss_scale=loss_scale)
    # Not bit for bit: the kernel forms 1 - beta_2 in float32 (1 - 0.999f = 0.00099998713,
    # 1.3e-5 below 0.001), as TF1's AdamOptimizer did, where Keras rounds the float64
    # difference; over 4 steps at learning rate 0.1 the variables differ by ~3e-6.
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=0, atol=2e-5)
    # The updates moved the variables (a comparison of two no-ops would pass too).
    assert np.abs(got[0] - _run(train_step.FusedAdam(**settings), steps=0)[0][0]).max() > 0.1
    # The same variables under the same names (below the scope: Keras numbers a second
    # LossScaleOptimizer's).
    names = lambda optimizer: [v.path.split("/", 1)[1] for v in optimizer.variables]
    assert names(fused) == names(keras_adam)
    if not loss_scale:
        assert fused.variables[0].path.startswith("adam/")


def test_the_trainer_uses_it():
    assert isinstance(train_step.make_optimizer("adam", 1e-3), train_step.FusedAdam)
    assert isinstance(train_step.make_optimizer("adam", 1e-3, loss_scale=True).inner_optimizer,
                      train_step.FusedAdam)
