"""Task 4: store a hash with HSET, one field at a time, and read it back with HGETALL."""

import redis

import common

HASH_KEY = "HolbertonSchools"
SCHOOLS = {
    "Portland": "50",
    "Seattle": "80",
    "New York": "20",
    "Bogota": "20",
    "Cali": "40",
    "Paris": "2",
}


def store_schools(client: redis.Redis, schools: dict[str, str] = SCHOOLS) -> None:
    """One HSET per field, each reply printed (``Reply: 1`` for a new field, 0 for an update)."""
    for city, value in schools.items():
        common.redis_print(client.hset(HASH_KEY, city, value))


def display_schools(client: redis.Redis) -> None:
    """Print the whole hash as a dict; a small hash keeps its fields in insertion order."""
    common.log(client.hgetall(HASH_KEY))


def main() -> None:
    client = common.connect()
    common.wait_until_connected(client)
    store_schools(client)
    display_schools(client)


if __name__ == "__main__":
    common.run(main)
