"""Short citations that travel inside nudges, each traceable to the article or its references.

Source: ../shared/reference/cardio-after-leg-day-article.txt (Well+Good, "Can You Do Cardio
After Leg Day?"), and RULES.md's evidence column.
"""

ARTICLE = "Well+Good, 'Can You Do Cardio After Leg Day?'"

ACSM_COOLDOWN = (
    "ACSM: at least a few minutes of low-intensity aerobic exercise after a workout to bring "
    f"heart rate and blood pressure down ({ARTICLE})"
)
CHURCHILL_LOW_MODERATE = (
    f"Dan Churchill, MS (Centr): keep cardio after leg day low to moderate ({ARTICLE})"
)
CARLSON_INJURY = (
    "Luke Carlson, MS, CEP: training legs hard then running hard raises injury "
    f"susceptibility ({ARTICLE})"
)
CDC_EFFORT = "CDC effort scale: moderate is 6 or less out of 10; talk test: talk but not sing"
SCHUMANN_2022 = (
    "Schumann et al. 2022, Sports Med 52(3):601-612: concurrent aerobic and strength training "
    "does not compromise hypertrophy or maximal strength"
)
SCHUMANN_2022_POWER = (
    "Schumann et al. 2022, Sports Med 52(3):601-612: same-session concurrent training slightly "
    "blunts explosive strength gains"
)
ROBINEAU_2016 = (
    "Robineau et al. 2016, J Strength Cond Res 30(3):672-683: 6+ hours between strength and "
    "endurance work reduces interference"
)
CARLSON_ENDURANCE = (
    "Luke Carlson: for an endurance event, do cardio before strength or on a non-strength day "
    f"({ARTICLE})"
)
CHURCHILL_HYBRID = (
    "Dan Churchill: cardio after strength simulates racing on fatigued legs; only for advanced "
    f"runners, beginners should rest in between ({ARTICLE})"
)
THOMAS_2016 = (
    "Thomas et al. 2016, ACSM/AND/DC joint position statement, Med Sci Sports Exerc "
    "48(3):543-568: 1.2 to 2.0 g/kg of protein a day"
)
ACSM_SLEEP = f"ACSM: at least eight hours of sleep a night for recovery ({ARTICLE})"
DOHERTY_2021 = (
    "Doherty et al. 2021, Nutrients 13(4):1330: the sleep and recovery practices of athletes"
)
CHURCHILL_ZONE2 = (
    "Dan Churchill: two to three hours of zone-2 (moderate) cardio a week, plus some "
    f"high-intensity efforts ({ARTICLE})"
)
CARLSON_RECOVERY = (
    "Luke Carlson: cardio does not impact recovery; protein and sleep are the biggest "
    f"influences ({ARTICLE})"
)
DUPUY_2018 = (
    "Dupuy et al. 2018, Front Physiol 9:403: massage is the most effective for soreness and "
    "perceived fatigue; compression, contrast water, cryotherapy and active recovery help"
)
CARLSON_NOVELTY = (
    "Luke Carlson: severe soreness for days is a sign of too much too fast; avoiding novelty "
    f"limits soreness ({ARTICLE})"
)
ARTICLE_CLOSING = (
    "If you will be sore after leg day, get your cardio done while you can still walk "
    f"({ARTICLE}, closing paragraph)"
)
