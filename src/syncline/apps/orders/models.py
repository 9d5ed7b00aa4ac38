"""Order shapes and their input limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from syncline.apps.inputs import Input
from syncline.apps.times import Time

MAX_NAME_LENGTH = 100
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

Status = Literal["pending", "shipped", "delivered"]


def _strip(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be only whitespace")
    return value


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_strip)]


class CreateOrder(Input):
    customer_name: Name
    product_name: Name
    status: Status = "pending"


class UpdateOrder(Input):
    customer_name: Name | None = None
    product_name: Name | None = None
    status: Status | None = None


class Order(BaseModel):
    id: int
    customer_name: str
    product_name: str
    status: Status
    created_at: Time
    updated_at: Time


class OrderPage(BaseModel):
    orders: list[Order]
    total: int
