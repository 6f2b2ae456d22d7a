from app import greeting


def test_greeting_default() -> None:
    assert greeting() == "Hello, world!"


def test_greeting_name() -> None:
    assert greeting("GKE") == "Hello, GKE!"
