import json
from pathlib import Path

DATA_DIR = Path(__file__).parent.parent / "data"


class Dataset:
    def __init__(self, split: str):
        self.data = json.loads((DATA_DIR / f"{split}.json").read_text())

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


def is_answer_valid(answer: float, correct: float, relative_tolerance: float = 0.05) -> bool:
    answer, correct = round(answer, 3), round(correct, 3)
    if abs(correct) < 1e-6:
        return abs(answer - correct) < 1e-3
    return abs(answer - correct) < relative_tolerance * abs(correct)


def benchmark(llm, dataset, max_question: int) -> float:
    n = min(len(dataset), max_question)
    answers = llm.answer(*[dataset[i][0] for i in range(n)])
    return sum(is_answer_valid(a, dataset[i][1]) for i, a in enumerate(answers)) / n
