"""Task 12: the stock server on PORT (default 1245); the app itself lives in stock.py."""

import common
import stock
import web


def main() -> None:
    web.serve(stock.create_app())


if __name__ == "__main__":
    common.run(main)
