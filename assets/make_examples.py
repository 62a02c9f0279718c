"""Write the app's example corpora (assets/*.jsonl) from templates; deterministic: `python assets/make_examples.py`."""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = 150

PRODUCTS = ["Aurora X2 headphones", "ProBlend 600 blender", "TrailLite 30L backpack", "Nimbus smart thermostat",
            "Orbit wireless charger", "Pixel Pal kids tablet", "Kestrel e-bike battery", "Lumen desk lamp",
            "BrewMaster espresso machine", "Vela yoga mat", "Quill fountain pen set", "Harbor rain jacket",
            "Chime mini speaker", "SnapCase phone cover", "Tundra sleeping bag", "Sprout herb garden kit",
            "Atlas 27-inch monitor", "ZenSleep pillow", "Volt USB-C hub", "Cascade water filter"]
DEVICES = ["Aurora X2 headphones", "Nimbus smart thermostat", "Orbit wireless charger", "Pixel Pal kids tablet",
           "Kestrel e-bike battery", "BrewMaster espresso machine", "Chime mini speaker", "Atlas 27-inch monitor"]
GREETINGS = ["", "", "Hi, ", "Hello, ", "Hey there, ", "Good morning, ", "Hi team, ", "Dear support, "]
SIGN_OFFS = ["", "", "", " Thanks.", " Thank you!", " Cheers.", " Regards, Sam", " Thanks in advance."]
URGENT = [" This is urgent.", " I need this sorted today please.", " Please help ASAP!", " It's a gift for tomorrow."]
NO_RUSH = [" No rush though.", " Whenever you get a chance.", " It's not urgent."]
ANGRY = [" This is the second time I'm writing about it.", " Really disappointed.", " Not happy at all."]

# intent -> templates; {product} and {order} are filled from the slot values
TICKETS = {
    "order_status": [
        "where is my order {order}? I ordered the {product} last week and the tracking hasn't moved.",
        "can you tell me when order {order} will arrive?",
        "my {product} still hasn't shipped, order number {order}.",
        "tracking for {order} says 'label created' for five days now. What's going on?",
        "any update on {order}? It was supposed to be delivered yesterday.",
    ],
    "refund_request": [
        "I returned the {product} two weeks ago (order {order}) and still have no refund.",
        "I'd like a refund for order {order}, the {product} is not what I expected.",
        "please refund me for the {product}. Order {order}.",
        "how long does a refund take? I sent back order {order} on Monday.",
    ],
    "cancel_order": [
        "please cancel order {order}, I ordered the wrong size.",
        "I want to cancel my {product} order before it ships. Order {order}.",
        "cancel {order} please, found it cheaper elsewhere.",
        "is it too late to cancel order {order}? I don't need the {product} anymore.",
    ],
    "damaged_item": [
        "the {product} arrived with a cracked case. Order {order}.",
        "my {product} came broken, the box was crushed. Order number {order}.",
        "order {order} arrived but the {product} doesn't turn on at all.",
        "one of the parts of the {product} is missing and another is scratched ({order}).",
    ],
    "change_address": [
        "I moved last week, can you ship order {order} to my new address instead?",
        "I typed the wrong street on order {order}, can I still change the delivery address?",
        "could you send the {product} to my office rather than home? Order {order}.",
    ],
    "technical_issue": [
        "my {product} keeps disconnecting from wifi after the last update.",
        "how do I reset the {product}? The app says 'device not found'.",
        "the {product} won't pair with my phone, I tried everything in the manual.",
        "the firmware update on my {product} failed halfway and now the light just blinks red.",
        "I can't log in to the app that controls my {product}, the password reset email never comes.",
    ],
}


def order_id(rng: random.Random) -> str:
    """An order id in one of the shop's formats."""
    return rng.choice([f"#{rng.randint(100000, 999999)}", f"ORD-{rng.randint(10000, 99999)}",
                       f"A{rng.randint(1000000, 9999999)}"])


def ticket(rng: random.Random) -> dict[str, str]:
    """One support message and its triage as compact JSON."""
    intent = rng.choice(list(TICKETS))
    template = rng.choice(TICKETS[intent])
    product, order = rng.choice(DEVICES if intent == "technical_issue" else PRODUCTS), order_id(rng)
    body = template.format(product=product, order=order)
    priority = {"damaged_item": "high", "technical_issue": "normal"}.get(intent, "normal")
    # The priority follows from the message, so a model can learn it: "low" only where the customer
    # says there is no hurry (earlier versions drew it at random, which no model can read off the text).
    low = intent in ("order_status", "change_address") and rng.random() < 0.3
    mood = rng.random()
    if mood < 0.2:
        extra = rng.choice(URGENT)
        if not low:
            body += extra
            priority = "urgent" if priority == "high" else "high"
    elif mood < 0.35:
        extra = rng.choice(ANGRY)
        if not low:
            body += extra
            priority = "high"
    if low:
        body += NO_RUSH[len(body) % len(NO_RUSH)]  # no draw: the weather corpus's random stream stays as it was
        priority = "low"
    text = rng.choice(GREETINGS) + body + rng.choice(SIGN_OFFS)
    text = text[0].upper() + text[1:]
    triage = {"intent": intent, "priority": priority,
              "product": product if "{product}" in template else None,
              "order_id": order if "{order}" in template else None}
    return {"input": text, "output": json.dumps(triage, ensure_ascii=False)}


CITIES = ["Oslo", "Lisbon", "Kraków", "Reykjavík", "Montréal", "Nairobi", "Osaka", "Valparaíso", "Edinburgh",
          "Seville", "Tallinn", "Perth", "Denver", "Hanoi", "Bergen", "Marseille", "Cork", "Ljubljana",
          "Porto", "Wellington", "Tromsø", "Quito", "Zürich", "Halifax", "Cape Town", "Graz", "Gdańsk", "Turin"]
# condition as the data names it -> as a sentence says it
CONDITIONS = {"sunny": "sunshine", "clear skies": "clear skies", "partly cloudy": "partly cloudy skies",
              "overcast": "overcast skies", "light rain": "light rain", "heavy rain": "heavy rain",
              "showers": "showers", "thunderstorms": "thunderstorms", "fog": "fog", "drizzle": "drizzle",
              "light snow": "light snow", "sleet": "sleet"}
DIRECTIONS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"]
DIRECTION_WORDS = dict(zip(DIRECTIONS, ["northerly", "north-easterly", "easterly", "south-easterly", "southerly",
                                        "south-westerly", "westerly", "north-westerly"], strict=False))
REPORTS = [
    "{City} will see {condition} with a high of {high}°C and a low of {low}°C{wind_clause}.",
    "Expect {condition} in {City} today, temperatures between {low} and {high}°C{wind_clause}.",
    "In {City}, {condition} and a top temperature of {high}°C; tonight it drops to {low}°C{wind_clause}.",
    "{Condition} in {City}, reaching {high}°C during the day and {low}°C overnight{wind_clause}.",
    "A {mood} day in {City}: {condition}, {high}°C at best and {low}°C at night{wind_clause}.",
]


def wind_clause(rng: random.Random, direction: str, speed: int) -> str:
    """How a report mentions the wind, stronger words for stronger wind."""
    if speed >= 40:
        return rng.choice([f", with strong {DIRECTION_WORDS[direction]} winds of {speed} km/h",
                           f". Gusty {direction} winds up to {speed} km/h"])
    return rng.choice([f", with a {DIRECTION_WORDS[direction]} breeze of {speed} km/h",
                       f" and {direction} winds around {speed} km/h", f", wind {direction} {speed} km/h"])


def weather(rng: random.Random) -> dict[str, str]:
    """One data record and a fluent report of it."""
    city, condition = rng.choice(CITIES), rng.choice(list(CONDITIONS))
    snowy = condition in ("light snow", "sleet")
    high = rng.randint(-6, 3) if snowy else rng.randint(4, 34)
    low = high - rng.randint(3, 11)
    fields = [f"city[{city}]", f"condition[{condition}]", f"high[{high}]", f"low[{low}]"]
    clause = ""
    if rng.random() < 0.75:  # some records have no wind, as in real feeds
        direction, speed = rng.choice(DIRECTIONS), rng.choice(range(5, 65, 5))
        fields.append(f"wind[{direction} {speed} km/h]")
        clause = wind_clause(rng, direction, speed)
    mood = "warm" if high >= 25 else "mild" if high >= 12 else "chilly" if high >= 3 else "freezing"
    text = rng.choice(REPORTS).format(City=city, condition=CONDITIONS[condition], Condition=CONDITIONS[condition].capitalize(),
                                      high=high, low=low, wind_clause=clause, mood=mood)
    if condition in ("thunderstorms", "heavy rain") and rng.random() < 0.6:
        text += rng.choice([" Take an umbrella.", " Stay indoors if you can.", " Watch for local flooding."])
    return {"input": ", ".join(fields), "output": text}


def write(name: str, rows: list[dict[str, str]]) -> None:
    """Write rows as JSON Lines next to this script."""
    with (HERE / name).open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    rng = random.Random(2024)
    write("support_tickets.jsonl", [ticket(rng) for _ in range(ROWS)])
    write("weather_reports.jsonl", [weather(rng) for _ in range(ROWS)])
