"""Chat models behind the LLMClient boundary (any litellm model, chosen in bootstrap) as a
VQA answerer and as the answer-extraction judge. Runs on the host: API models need the
network, which sandboxes do not have; they see the same prompt and image as a local model
(the image as a base64 data-URL part of the user message)."""

from __future__ import annotations

from collections.abc import Sequence

from medloop.core.errors import LLMError
from medloop.evaluation.vqa_extract import extract_letter
from medloop.experiments.vlm.base import ModelAnswer
from medloop.experiments.vlm.prompting import chat_messages
from medloop.experiments.vlm.runner import answer_concurrently
from medloop.experiments.vlm.tsv import VqaItem
from medloop.llm.base import LLMClient, Message

JUDGE_PROMPT = """You check answers to a multiple-choice question. Below are the question, its options and \
an answer written by someone else. Reply with the single letter of the option that the answer chose. \
Reply NONE if it chose no option or more than one.

Question: {question}
Options:
{options}
Answer: {response}

Your reply (one letter or NONE):"""


class ChatAnswerModel:
    """Answers items through an LLMClient, one request per item, a batch at a time."""

    def __init__(self, client: LLMClient, *, name: str, max_tokens: int = 64) -> None:
        self.client = client
        self.name = name
        self.max_tokens = max_tokens

    def _ask(self, item: VqaItem) -> str:
        message = chat_messages(item)[0]
        completion = self.client.complete(
            [Message(role="user", content=message["content"])], temperature=0.0, max_tokens=self.max_tokens
        )
        return completion.text

    def answer_batch(self, items: Sequence[VqaItem], *, timeout_s: float) -> list[ModelAnswer]:
        return answer_concurrently(self._ask, items, timeout_s=timeout_s)

    def close(self) -> None:
        return None


class LLMJudge:
    """Asks an LLM which option a free-text answer chose (text only, no image)."""

    def __init__(self, client: LLMClient, *, name: str) -> None:
        self.client = client
        self.name = name

    def choose(self, item: VqaItem, response: str) -> tuple[str | None, str]:
        prompt = JUDGE_PROMPT.format(
            question=item.question,
            options="\n".join(f"{k}. {v}" for k, v in item.options.items()),
            response=response.strip(),
        )
        try:
            reply = self.client.complete(
                [Message(role="user", content=prompt)], temperature=0.0, max_tokens=8
            ).text
        except LLMError as exc:
            return None, f"judge failed: {exc}"
        return extract_letter(reply, list(item.options)), reply
