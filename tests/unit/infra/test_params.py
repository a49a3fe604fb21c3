from chainflow.infra.db.params import in_list


def test_in_list_pads_to_a_power_of_two_with_the_same_set() -> None:
    for n in range(1, 130):
        values = list(range(n))
        padded = in_list(values)
        assert len(padded) & (len(padded) - 1) == 0  # a power of two
        assert len(padded) < 2 * n
        assert set(padded) == set(values)
        assert padded[:n] == values


def test_in_list_of_nothing_is_empty() -> None:
    assert in_list([]) == []


def test_lengths_one_to_64_make_seven_statements() -> None:
    assert len({len(in_list(range(n))) for n in range(1, 65)}) == 7
