"""Writing many rows at once.

Django's bulk_create builds its SQL in Python value by value (about 0.1 ms per row of Image's
30 columns, a fifth of what an upload costs per image), and bulk_update builds a CASE expression
per field and row (it cost more than the model itself when labeling); one statement executed for
many rows hands that work to the database driver.
"""

from collections.abc import Iterable, Sequence

from django.db import connection, transaction


def rows_insert(model, objects: list) -> None:
    """INSERT `objects` (unsaved instances of `model`) with one executemany; like bulk_create,
    no signals are sent and the objects get no primary keys."""
    if not objects:
        return
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    # Only quoted names from the model are formatted in; every value is a parameter.
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    # Most columns repeat across the rows (the batch, the action, its time, a label): each
    # distinct value is prepared once, which halves the cost of writing a review action's changes.
    prepared: dict = {}

    def prepare(field, obj):
        value = field.pre_save(obj, add=True)
        try:
            key = (field.attname, type(value), value)
            return prepared[key]
        except KeyError:
            prepared[key] = field.get_db_prep_save(value, connection)
            return prepared[key]
        except TypeError:  # unhashable (a JSON value): prepared every time
            return field.get_db_prep_save(value, connection)

    rows = [tuple(prepare(field, obj) for field in fields) for obj in objects]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def rows_update(
    model, columns: Sequence[str], keys: Sequence[str], rows: Iterable[Sequence], *, also: str = ""
) -> None:
    """UPDATE one row per item of `rows` with one executemany, in one transaction. Each item
    holds the values of `columns` (model field names), then the parameters of `also` (more SET
    SQL, such as a counter increment), then the values of `keys`, which the WHERE clause matches.
    Like bulk_update, no signals are sent."""
    set_fields = [model._meta.get_field(name) for name in columns]
    key_fields = [model._meta.get_field(name) for name in keys]
    quote = connection.ops.quote_name
    assignments = [f"{quote(field.column)} = %s" for field in set_fields] + ([also] if also else [])
    where = " AND ".join(f"{quote(field.column)} = %s" for field in key_fields)
    # Only quoted names from the model and the caller's constant `also` are formatted in; every
    # value is a parameter.
    sql = f"UPDATE {quote(model._meta.db_table)} SET {', '.join(assignments)} WHERE {where}"  # noqa: S608
    split = (len(set_fields), len(set_fields) + also.count("%s"))

    def params(row: Sequence) -> tuple:
        values, more, key_values = row[: split[0]], row[split[0] : split[1]], row[split[1] :]
        return (
            *(field.get_db_prep_save(v, connection) for field, v in zip(set_fields, values, strict=True)),
            *more,
            *(
                field.get_db_prep_value(v, connection)
                for field, v in zip(key_fields, key_values, strict=True)
            ),
        )

    batch = [params(row) for row in rows]
    if batch:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, batch)
