"""Class names for per-class outputs: Fashion-MNIST's ten names; ids only where a data set has none."""

from ganforge.class_names import class_names, write_row_labels


def test_fashion_mnist_names():
    names = class_names("fashion-mnist")
    assert len(names) == 10 and names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    assert class_names("some/folder") is None


def test_row_labels(tmp_path):
    path = write_row_labels(tmp_path / "g.classes.txt", (3, 9), "fashion-mnist")
    assert path.read_text().splitlines() == ["row 0: class 3 Dress", "row 1: class 9 Ankle boot"]
    plain = write_row_labels(tmp_path / "p.txt", (0,), "x.npz")
    assert plain.read_text() == "row 0: class 0\n"
