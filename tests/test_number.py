import torch

from detector.categories import digit_to_category
from detector.detections import Detections
from detector.number import NO_NUMBER, number_value, read_number


def digits_at(items: list[tuple[int, float, float]]) -> Detections:
    """(digit, left x, score) -> 10 px wide boxes on one line."""
    boxes = torch.tensor([[x, 5.0, x + 10.0, 25.0] for _, x, _ in items]).reshape(-1, 4)
    scores = torch.tensor([s for _, _, s in items], dtype=torch.float32)
    labels = torch.tensor([digit_to_category(d) for d, _, _ in items], dtype=torch.int64)
    return Detections(boxes, scores, labels)


def test_reads_left_to_right_whatever_the_input_order():
    reading = read_number(digits_at([(3, 40, 0.9), (1, 0, 0.8), (2, 20, 0.95)]), 0.5)
    assert reading.text == "123" and reading.value == 123
    assert reading.digits.boxes[:, 0].tolist() == [0, 20, 40]


def test_orders_by_box_centre_not_left_edge():
    d = digits_at([(7, 0, 0.9), (4, 5, 0.9)])
    d.boxes[0, 2] = 40.0  # a wide first box whose centre (20) lies right of the second's (10)
    assert read_number(d, 0.5).text == "47"


def test_leading_zeros_kept_in_text_dropped_in_value():
    reading = read_number(digits_at([(0, 0, 0.9), (0, 12, 0.9), (7, 24, 0.9)]), 0.5)
    assert reading.text == "007" and reading.value == 7


def test_threshold_is_inclusive_and_drops_weak_digits():
    d = digits_at([(5, 0, 0.5), (6, 12, 0.49), (8, 24, 0.7)])
    reading = read_number(d, 0.5)
    assert reading.text == "58" and reading.confidence == 0.5


def test_no_digits_reads_minus_one():
    for det in (Detections.empty(), digits_at([(1, 0, 0.2)])):
        reading = read_number(det, 0.5)
        assert (reading.text, reading.value, reading.confidence) == ("-1", NO_NUMBER, 0.0)
        assert len(reading.digits) == 0


def test_number_value():
    assert number_value("") == NO_NUMBER and number_value("-1") == NO_NUMBER
    assert number_value("0") == 0 and number_value("0420") == 420
