import pytest

from concert_core.asyncobject import AsyncObject


class Plain:
    def __init__(self, value):
        self.plain = value


class Child(AsyncObject, Plain):
    async def __ainit__(self, a, b=2):
        await super().__ainit__()
        Plain.__init__(self, a + b)
        self.a = a


async def test_await_constructs():
    obj = await Child(1)
    assert isinstance(obj, Child)
    assert obj.a == 1
    assert obj.plain == 3


async def test_wrong_arguments_raise_type_error_at_call():
    with pytest.raises(TypeError, match="Child"):
        Child()
    with pytest.raises(TypeError):
        Child(1, 2, 3)
    with pytest.raises(TypeError):
        Child(1, c=3)


def test_defining_init_is_refused():
    with pytest.raises(TypeError, match="__ainit__"):

        class Bad(AsyncObject):
            def __init__(self):
                pass


async def test_subclass_inherits_signature_check():
    class Grandchild(Child):
        async def __ainit__(self, x):
            await super().__ainit__(x, b=0)

    obj = await Grandchild(5)
    assert obj.plain == 5
    with pytest.raises(TypeError):
        Grandchild(1, 2)
