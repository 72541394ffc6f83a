"""Tests for magenta_style.inference.style_spec: strict --which_styles parsing and output naming."""
import numpy as np
import pytest

from magenta_style.inference import style_spec


@pytest.mark.parametrize("text, styles", [
    ("[0,1,2]", (0, 1, 2)),
    ("0,1,2", (0, 1, 2)),
    (" [ 2 , 0 ] ", (2, 0)),
    ("[5]", (5,)),
    ("3", (3,)),
])
def test_list_form(text, styles):
    spec = style_spec.parse(text)
    assert spec.kind == "list"
    assert spec.styles == styles
    assert spec.weights == ()


def test_list_weight_rows_are_one_hot_in_given_order():
    rows = style_spec.parse("[2,0]").weight_rows(4)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, [[0, 0, 1, 0], [1, 0, 0, 0]])


def test_list_names():
    spec = style_spec.parse("[0,1,12]")
    assert spec.output_names("photo") == ["photo_0.png", "photo_1.png", "photo_12.png"]
    assert spec.output_names("photo", "jpg") == ["photo_0.jpg", "photo_1.jpg", "photo_12.jpg"]


def test_mix_form_sorts_keys_and_keeps_weights_unnormalized():
    spec = style_spec.parse("{2:0.7, 0:0.3}")
    assert spec.kind == "mix"
    assert spec.styles == (0, 2)
    assert spec.weights == (0.3, 0.7)
    rows = spec.weight_rows(3)
    assert rows.shape == (1, 3) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows, np.array([[0.3, 0.0, 0.7]], np.float32))
    # Not normalized: 0.5 stays 0.5.
    np.testing.assert_array_equal(style_spec.parse("{1:0.5}").weight_rows(2), [[0.0, 0.5]])


@pytest.mark.parametrize("text, name", [
    ("{0:0.3,2:0.7}", "photo_0_300_2_700.png"),  # the example
    ("{2:0.7,0:0.3}", "photo_0_300_2_700.png"),  # keys sorted
    ("{0:0.2,2:0.8}", "photo_0_200_2_800.png"),
    ("{1:1}", "photo_1_1000.png"),
    ("{0:0.05}", "photo_0_050.png"),              # zero-padded to 3 digits
    ("{0:0.0004}", "photo_0_000.png"),            # rounded
    ("{0:0.0996}", "photo_0_100.png"),            # rounded, not truncated
    ("{3:1.5,1:2e-1}", "photo_1_200_3_1500.png"),
    ("{0:-0.5,1:1.5}", "photo_0_-500_1_1500.png"),  # negative weights keep Magenta's name
])
def test_mix_names(text, name):
    assert style_spec.parse(text).output_names("photo") == [name]


@pytest.mark.parametrize("text", ["{0:.5}", "{0:5.}", "{0:+0.5}", "{0:1E-3}", "{ 0 : 0.5 }"])
def test_mix_number_notations(text):
    spec = style_spec.parse(text)
    assert spec.styles == (0,)
    assert spec.weights[0] == float(text.strip("{} ").split(":")[1])


def test_negative_weight_is_allowed():
    np.testing.assert_array_equal(style_spec.parse("{0:-0.5,1:1.5}").weight_rows(2),
                                  [[-0.5, 1.5]])


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("[]", "list is empty"),
    ("{}", "mix is empty"),
    ("[0,1", "must end with ']'"),
    ("0,1]", "unbalanced"),
    ("{0:0.5", "must end with '}'"),
    ("[0,,1]", "stray comma"),
    ("[0,1,]", "stray comma"),
    ("[-1]", "negative"),
    ("{-1:0.5}", "negative"),
    ("[1.0]", "not a style index"),
    ("[a]", "not a style index"),
    ("[0x1]", "not a style index"),
    ("[[0]]", "not a style index"),
    ("[0,0]", "listed twice"),
    ("{0:0.5,0:0.2}", "appears twice"),
    ("{0:nan}", "finite"),
    ("{0:inf}", "finite"),
    ("{0:-Infinity}", "finite"),
    ("{0:1e39}", "float32"),
    ("{0:1e999}", "float32"),
    ("{0:1e19}", "at most 1e+06"),      # once NaN from the network, named nowhere
    ("{0:1,1:-2e6}", "weight of style 1"),
    ("{0:abc}", "not a number"),
    ("{0:1_0}", "not a number"),
    ("{0:}", "not a number"),
    ("{0}", "not a 'style:weight' pair"),
    ("{0:1:2}", "not a 'style:weight' pair"),
    ("{0:0.5,}", "stray comma"),
    ("2:0.7", "quoted"),  # what an unquoted shell makes of {0:0.3,2:0.7}
    ("__import__('os')", "not a style index"),
])
def test_invalid(text, fragment):
    with pytest.raises(style_spec.StyleSpecError) as info:
        style_spec.parse(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert message.startswith("--which_styles=")


def test_not_text():
    with pytest.raises(style_spec.StyleSpecError):
        style_spec.parse([0, 1])


@pytest.mark.parametrize("text", ["[0,3]", "{3:0.5}", "[7]"])
def test_unknown_style_index(text):
    spec = style_spec.parse(text)
    with pytest.raises(style_spec.StyleSpecError, match=r"does not exist; the model has 3"):
        spec.validate(3)
    with pytest.raises(style_spec.StyleSpecError):
        spec.weight_rows(3)


def test_all_styles():
    spec = style_spec.all_styles(3)
    assert spec == style_spec.parse("[0,1,2]")
    np.testing.assert_array_equal(spec.weight_rows(3), np.eye(3))


def test_error_is_a_value_error():
    assert issubclass(style_spec.StyleSpecError, ValueError)


def test_long_list_parses_in_linear_time_and_errors_stay_short():
    # 200k entries took minutes with a list-based duplicate check (quadratic); with the
    # set this is well under a second, so a regression shows as a hung test.
    many = ",".join(map(str, range(200_000)))
    spec = style_spec.parse(many)
    assert spec.styles[-1] == 199_999 and len(spec.styles) == 200_000
    with pytest.raises(style_spec.StyleSpecError) as info:
        style_spec.parse(many + ",5")
    message = str(info.value)
    assert "style 5 is listed twice" in message
    assert len(message) < 200 and "more characters" in message
    with pytest.raises(style_spec.StyleSpecError) as info:
        spec.validate(3)
    assert len(str(info.value)) < 200


def test_shorten():
    assert style_spec.shorten("abc") == "abc"
    text = "x" * 1000
    short = style_spec.shorten(text)
    assert len(short) <= style_spec.ECHO_LIMIT and short.startswith("x") and short.endswith("x")
    assert "960 more characters" in short
