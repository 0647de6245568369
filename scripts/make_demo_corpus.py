"""Generate the demo NER corpus shipped as ``medkit_exp/io/demo_data/demo.jsonl``.

Short synthetic English clinical sentences labelled ``problem``, ``treatment`` and ``test``,
written from the templates and vocabularies below with a fixed seed, so the output is the
same on every run. About a fifth of each vocabulary is held out of train and appears only in
dev and test, so that a model has to generalise (F1 is not trivially 1.0).

    python scripts/make_demo_corpus.py            # rewrite the shipped file
    python scripts/make_demo_corpus.py --check    # exit 1 if the shipped file is stale
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "medkit_exp" / "io" / "demo_data" / "demo.jsonl"
SEED = 1729
SIZES = {"train": 280, "dev": 60, "test": 60}
HELD_OUT_FRACTION = 0.2
HELD_OUT_RATE = 0.35  # chance that a dev/test slot takes a held-out term

PROBLEMS = """type 2 diabetes|hypertension|pneumonia|asthma|chronic kidney disease|atrial fibrillation|
heart failure|COPD|urinary tract infection|migraine|depression|anemia|hypothyroidism|osteoarthritis|
rheumatoid arthritis|gout|deep vein thrombosis|pulmonary embolism|sepsis|cellulitis|
gastroesophageal reflux disease|peptic ulcer|acute pancreatitis|appendicitis|cholecystitis|
hyperlipidemia|obesity|sleep apnea|epilepsy|stroke|myocardial infarction|angina|bronchitis|influenza|
COVID-19|psoriasis|eczema|iron deficiency anemia|vitamin D deficiency|hypokalemia|hyponatremia|
acute kidney injury|cirrhosis|hepatitis C|Crohn's disease|ulcerative colitis|chest pain|
shortness of breath|fever|abdominal pain|nausea|headache|back pain|fatigue|dizziness|anxiety|insomnia|
diverticulitis"""

DRUGS = """metformin|insulin glargine|lisinopril|amlodipine|atorvastatin|aspirin|clopidogrel|warfarin|
apixaban|heparin|furosemide|metoprolol|paracetamol|ibuprofen|morphine|amoxicillin|ceftriaxone|
azithromycin|ciprofloxacin|vancomycin|doxycycline|prednisone|methotrexate|levothyroxine|omeprazole|
pantoprazole|salbutamol|fluticasone|sertraline|citalopram|gabapentin|allopurinol|colchicine|
ferrous sulfate|potassium chloride|enoxaparin|oseltamivir|ondansetron|nitroglycerin|insulin"""

PROCEDURES = """physiotherapy|cognitive behavioural therapy|laparoscopic cholecystectomy|appendectomy|
hemodialysis|oxygen therapy|CPAP|knee replacement|cardioversion|coronary angioplasty|
intravenous fluids|smoking cessation counselling"""

TESTS = """HbA1c|chest X-ray|complete blood count|CT scan of the abdomen|MRI of the brain|electrocardiogram|
ECG|echocardiogram|lipid panel|urinalysis|urine culture|blood cultures|troponin|D-dimer|
serum creatinine|liver function tests|TSH|arterial blood gas|colonoscopy|upper endoscopy|
abdominal ultrasound|spirometry|CRP|ferritin|vitamin D level|PCR test|sleep study|EEG|
bone density scan|potassium level|INR|stool culture|CT angiography"""

# {P} problem, {D} drug, {R} procedure (both "treatment"), {X} test; {N} 2-12, {AGE}, {DOSE}.
TEMPLATES = """The patient was started on {D} for {P}.
She has a history of {P} and {P}.
{X} showed no evidence of {P}.
He was admitted with {P} and treated with {D}.
{X} was ordered to rule out {P}.
The {X} result was consistent with {P}.
We will continue {D} and repeat the {X} in {N} weeks.
She reports {P} for the last {N} days.
He denies {P} or {P}.
{D} {DOSE} was given for {P}.
{D} was stopped because of {P}.
His {X} was within normal limits.
Her {P} is well controlled on {D}.
The {X} and the {X} were done on admission.
Given the abnormal {X}, {D} was added.
The patient underwent {R} without complications.
Recovery after {R} was complicated by {P}.
{P} was diagnosed on {X} and managed with {D} and {D}.
Family history is significant for {P}.
No {P} was noted on the {X}.
Switch {D} to {D} because of {P}.
She was referred for {R} because of worsening {P}.
Check {X}, {X} and {X} before discharge.
He is allergic to {D}, which caused {P}.
The {X} was negative.
Symptoms of {P} improved after {N} days of {D}.
{P} secondary to {P} is suspected and the {X} is pending.
Plan: {D} {DOSE} daily, {X} in the morning.
The patient complains of {P}, {P} and {P}.
Increase {D} to {DOSE} and monitor the {X}.
A {AGE}-year-old man presents with {P}.
A {AGE}-year-old woman with {P} on {D} presents for follow-up.
{R} is recommended for her {P}.
The {X} was repeated after {D} and showed improvement.
He was treated with {D} and {R} for {P} confirmed by {X}.
The patient was discharged home in stable condition.
Follow-up is scheduled in {N} weeks with her primary care physician.
She lives with her husband and walks {N} km a day.
He was seen by the team this morning.
Vital signs were stable overnight.
Informed consent was obtained from the patient.
The patient asked about returning to work."""

SLOT_LABELS = {"P": "problem", "D": "treatment", "R": "treatment", "X": "test"}
DOSES = ["5 mg", "10 mg", "20 mg", "40 mg", "250 mg", "500 mg", "1 g", "2 g"]
_SLOT = re.compile(r"\{(P|D|R|X|N|AGE|DOSE)\}")


def _vocab(block: str) -> list[str]:
    return [w.strip() for w in block.replace("\n", "").split("|") if w.strip()]


def _split_vocab(rng: random.Random, words: list[str]) -> tuple[list[str], list[str]]:
    held = set(rng.sample(words, max(1, round(len(words) * HELD_OUT_FRACTION))))
    return [w for w in words if w not in held], [w for w in words if w in held]


def _fill(rng: random.Random, template: str, pools: dict, split: str) -> dict:
    """One record: the template with its slots filled, and entities at their offsets."""
    text, entities, used, pos = "", [], set(), 0
    for match in _SLOT.finditer(template):
        text += template[pos : match.start()]
        pos = match.end()
        slot = match.group(1)
        if slot in ("N", "AGE"):
            text += str(rng.randint(2, 12) if slot == "N" else rng.randint(18, 92))
            continue
        if slot == "DOSE":
            text += rng.choice(DOSES)
            continue
        seen, held = pools[slot]
        pool = held if split != "train" and rng.random() < HELD_OUT_RATE else seen
        choices = [w for w in pool if w not in used] or [w for w in seen if w not in used]
        word = rng.choice(choices)
        used.add(word)
        if not text:
            word = word[0].upper() + word[1:]
        entities.append({"label": SLOT_LABELS[slot], "spans": [[len(text), len(text) + len(word)]], "text": word})
        text += word
    text += template[pos:]
    return {"text": text, "entities": entities}


def build_records(seed: int = SEED) -> list[dict]:
    """The demo corpus as JSONL records, train then dev then test (deterministic for a seed)."""
    rng = random.Random(seed)
    pools = {
        "P": _split_vocab(rng, _vocab(PROBLEMS)),
        "D": _split_vocab(rng, _vocab(DRUGS)),
        "R": _split_vocab(rng, _vocab(PROCEDURES)),
        "X": _split_vocab(rng, _vocab(TESTS)),
    }
    templates = TEMPLATES.split("\n")
    records = []
    for split, size in SIZES.items():
        for i in range(size):
            record = _fill(rng, rng.choice(templates), pools, split)
            record = {"id": f"demo-{split}-{i:03d}", **record, "metadata": {"split": split}}
            records.append(record)
    return records


def render(records: list[dict]) -> str:
    """JSONL text of the records, through the package's own writer (one document a line)."""
    sys.path.insert(0, str(REPO))
    from medkit_exp.core.document import Entity, Span, TextDocument
    from medkit_exp.io.jsonl import format_jsonl

    docs = [
        TextDocument(
            text=r["text"],
            id=r["id"],
            metadata=r["metadata"],
            anns=[
                Entity(label=e["label"], spans=[Span(*s) for s in e["spans"]], text=e["text"])
                for e in r["entities"]
            ],
        )
        for r in records
    ]
    return format_jsonl(docs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the output file differs from a fresh build")
    args = parser.parse_args(argv)
    text = render(build_records())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python scripts/make_demo_corpus.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    from medkit_exp.io.base import atomic_write_text

    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, text)
    print(f"wrote {len(text.splitlines())} documents to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
