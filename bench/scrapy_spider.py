#!/usr/bin/env python3
"""The Scrapy peer: a plain CrawlSpider-like spider over the benchmark site.

Settings as in the issue's table: ROBOTSTXT_OBEY off, AUTOTHROTTLE off, DOWNLOAD_DELAY 0,
CONCURRENT_REQUESTS 64, CONCURRENT_REQUESTS_PER_DOMAIN 64; links cut at '?' and '#';
no item pipeline (Scrapy stores nothing). Runs in its own virtualenv (bench/.venv-scrapy).

usage: scrapy_spider.py SEED_URL   (prints one JSON line)
"""

from __future__ import annotations

import json
import sys
import time
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess


class BenchSpider(scrapy.Spider):
    name = "bench"

    def __init__(self, seed: str, **kw: object) -> None:
        super().__init__(**kw)
        self.start_urls = [seed]
        self.port = urlsplit(seed).port
        self.pages = 0

    def parse(self, response):  # type: ignore[no-untyped-def]
        self.pages += 1
        for href in response.css("a::attr(href)").getall():
            url = response.urljoin(href).split("#", 1)[0].split("?", 1)[0]
            parts = urlsplit(url)
            if parts.scheme == "http" and parts.port == self.port:
                yield scrapy.Request(url, callback=self.parse)


def main() -> None:
    seed = sys.argv[1]
    process = CrawlerProcess(settings={
        "ROBOTSTXT_OBEY": False, "AUTOTHROTTLE_ENABLED": False, "DOWNLOAD_DELAY": 0,
        "CONCURRENT_REQUESTS": 64, "CONCURRENT_REQUESTS_PER_DOMAIN": 64, "LOG_LEVEL": "ERROR",
        "TELNETCONSOLE_ENABLED": False, "COOKIES_ENABLED": False, "RETRY_ENABLED": False,
    })
    crawler = process.create_crawler(BenchSpider)
    start = time.monotonic()
    process.crawl(crawler, seed=seed)
    process.start()
    elapsed = time.monotonic() - start
    pages = crawler.spider.pages
    print(json.dumps({"pages": pages, "seconds": round(elapsed, 2), "pages_per_s": round(pages / elapsed, 1)}))


if __name__ == "__main__":
    main()
