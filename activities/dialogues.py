"""The scripted conversations: Sadness's support chat and Fear's mentor. Each is a graph of nodes;
a node says a few lines and offers choices, and a node without choices is an ending. The page gets
the graph as JSON (`dialogue_as_json`) and walks it without asking the server again."""

from collections import deque
from dataclasses import dataclass, field

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Choice:
    label: Promise
    next: str


@dataclass(frozen=True)
class Node:
    lines: tuple[Promise, ...]
    choices: tuple[Choice, ...] = ()
    # "breathe" shows the breathing bubble next to the lines; the page knows no other exercise.
    exercise: str = ""

    @property
    def is_ending(self) -> bool:
        return not self.choices


@dataclass(frozen=True)
class Dialogue:
    name: str
    start: str
    nodes: dict[str, Node] = field(default_factory=dict)


EXERCISES = {"", "breathe"}


def dialogue_problems(dialogue: Dialogue) -> list[str]:
    """Everything that would strand a visitor: links to missing nodes, nodes nobody can reach, no
    ending, and nodes from which no ending can be reached (a loop with no way out)."""
    nodes = dialogue.nodes
    problems = []
    if dialogue.start not in nodes:
        return [f"start node {dialogue.start!r} does not exist"]
    for node_id, node in nodes.items():
        if not node.lines:
            problems.append(f"{node_id}: says nothing")
        if node.exercise not in EXERCISES:
            problems.append(f"{node_id}: unknown exercise {node.exercise!r}")
        problems += [
            f"{node_id}: choice leads to missing {c.next!r}" for c in node.choices if c.next not in nodes
        ]
    if problems:
        return problems
    reachable = _reachable(dialogue.start, lambda n: [c.next for c in nodes[n].choices])
    problems += [f"{node_id}: unreachable" for node_id in nodes if node_id not in reachable]
    endings = {node_id for node_id, node in nodes.items() if node.is_ending}
    if not endings:
        problems.append("no ending")
    parents: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for node_id, node in nodes.items():
        for choice in node.choices:
            parents[choice.next].append(node_id)
    can_end = set()
    for ending in endings:
        can_end |= _reachable(ending, lambda n: parents[n])
    problems += [f"{node_id}: no way to an ending" for node_id in nodes if node_id in reachable - can_end]
    return problems


def _reachable(start: str, neighbours) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        for following in neighbours(queue.popleft()):
            if following not in seen:
                seen.add(following)
                queue.append(following)
    return seen


def dialogue_as_json(dialogue: Dialogue) -> dict:
    """The graph with every string in the active language, ready for `json_script`."""
    return {
        "start": dialogue.start,
        "nodes": {
            node_id: {
                "lines": [str(line) for line in node.lines],
                "choices": [{"label": str(c.label), "next": c.next} for c in node.choices],
                "exercise": node.exercise,
            }
            for node_id, node in dialogue.nodes.items()
        },
    }


def _menu_choices(*extra: Choice) -> tuple[Choice, ...]:
    return (
        Choice(_("A breathing exercise"), "breathe"),
        Choice(_("Some kind words"), "affirm_1"),
        Choice(_("A short meditation"), "meditate"),
        *extra,
    )


_FEEL_BETTER = Choice(_("I feel better"), "better")
_SOMETHING_ELSE = Choice(_("Something else"), "menu")

SADNESS_CHAT = Dialogue(
    name="sadness",
    start="start",
    nodes={
        "start": Node(
            (
                _("Hi. I'm Sadness. It's okay to feel low; you don't have to hide it here."),
                _("I can stay with you for a while. What would help right now?"),
            ),
            _menu_choices(Choice(_("I just want to talk"), "talk")),
        ),
        "menu": Node(
            (_("What would you like to try now?"),),
            _menu_choices(_FEEL_BETTER, Choice(_("Not now"), "not_now")),
        ),
        "breathe": Node(
            (
                _("Let's breathe together. Watch the bubble."),
                _("Breathe in through your nose while it grows… and slowly out while it shrinks."),
                _("Slow breaths tell your body it is safe. Let's take five of them."),
            ),
            (Choice(_("Once more"), "breathe_again"), _SOMETHING_ELSE, _FEEL_BETTER),
            exercise="breathe",
        ),
        "breathe_again": Node(
            (
                _("Again, gently. Let your shoulders drop as you breathe out."),
                _("Notice your feet on the floor. You are here, and that is enough."),
            ),
            (_SOMETHING_ELSE, _FEEL_BETTER),
            exercise="breathe",
        ),
        "affirm_1": Node(
            (
                _("You don't have to be okay all the time."),
                _("Being sad means something matters to you. That is not a weakness."),
            ),
            (Choice(_("Another one, please"), "affirm_2"), _SOMETHING_ELSE, _FEEL_BETTER),
        ),
        "affirm_2": Node(
            (
                _("You have got through hard days before. This one will pass too."),
                _("Be as kind to yourself as you would be to a friend who feels like this."),
            ),
            (Choice(_("One more"), "affirm_3"), _SOMETHING_ELSE, _FEEL_BETTER),
        ),
        "affirm_3": Node(
            (
                _("Asking for help is brave. Talking to someone you trust can lighten the load."),
                _("You matter, exactly as you are today."),
            ),
            (_SOMETHING_ELSE, _FEEL_BETTER),
        ),
        "meditate": Node(
            (_("Let's take a short trip inside your head. Which one would you like?"),),
            (
                Choice(_("Rain on the window"), "rain"),
                Choice(_("A warm light"), "warm_light"),
                _SOMETHING_ELSE,
            ),
        ),
        "rain": Node(
            (
                _("Imagine you are sitting by a window, wrapped in a soft blanket."),
                _("Outside, rain is falling. Each drop runs down the glass and disappears."),
                _("Your thoughts can be like those drops: you see them, and you let them go."),
            ),
            (Choice(_("Another meditation"), "meditate"), _SOMETHING_ELSE, _FEEL_BETTER),
        ),
        "warm_light": Node(
            (
                _("Close your eyes if you like. Picture a small, warm light in your chest."),
                _("With every breath it grows a little, warming your arms, your hands, your face."),
                _("Stay with that warmth for a moment. It is yours, and you can come back to it."),
            ),
            (Choice(_("Another meditation"), "meditate"), _SOMETHING_ELSE, _FEEL_BETTER),
        ),
        "talk": Node(
            (_("I'm listening. What is closest to how you feel?"),),
            (
                Choice(_("Something happened today"), "talk_event"),
                Choice(_("I don't really know why"), "talk_unknown"),
                Choice(_("I feel lonely"), "talk_lonely"),
            ),
        ),
        "talk_event": Node(
            (
                _("That sounds hard. It makes sense that it hurts."),
                _("You don't have to fix it right now. Sometimes it's enough to let yourself feel it."),
            ),
            (Choice(_("Let's breathe"), "breathe"), _SOMETHING_ELSE, _FEEL_BETTER),
        ),
        "talk_unknown": Node(
            (
                _("That happens too. Sadness sometimes arrives without a reason it can name."),
                _("Rest, a glass of water, a short walk: small things are still things."),
            ),
            (Choice(_("Some kind words"), "affirm_1"), _SOMETHING_ELSE, _FEEL_BETTER),
        ),
        "talk_lonely": Node(
            (
                _("Feeling lonely is one of the heaviest feelings. Thank you for telling me."),
                _("Is there one person you could send a message to today? Even a short hello counts."),
            ),
            (Choice(_("A short meditation"), "meditate"), _SOMETHING_ELSE, _FEEL_BETTER),
        ),
        "better": Node(
            (
                _("I'm so glad you feel a little lighter."),
                _("Sadness helps us slow down and ask for support. You did exactly that."),
            ),
        ),
        "not_now": Node(
            (_("That's okay. Come back whenever you need to; I'll be right here."),),
        ),
    },
)


_IN_CONTROL = Choice(_("I feel in control"), "in_control")
_OTHER_WAYS = Choice(_("Show me other ways"), "menu")

FEAR_MENTOR = Dialogue(
    name="fear",
    start="start",
    nodes={
        "start": Node(
            (
                _("Hi, I'm Fear. My job is to keep you safe, but sometimes I shout a bit too loudly."),
                _("So I've brought the Mentor. The Mentor knows calm places and good questions."),
                _("Mentor: Hello. We'll take it slowly, together. Where would you like to start?"),
            ),
            (
                Choice(_("Imagine a calm forest"), "forest_1"),
                Choice(_("Name what scares me"), "name_it"),
                Choice(_("Ground myself here and now"), "ground_1"),
            ),
        ),
        "menu": Node(
            (_("Mentor: Which way shall we try?"),),
            (
                Choice(_("Imagine a calm forest"), "forest_1"),
                Choice(_("Name what scares me"), "name_it"),
                Choice(_("Ground myself here and now"), "ground_1"),
                _IN_CONTROL,
            ),
        ),
        "forest_1": Node(
            (
                _("Mentor: Picture the edge of a quiet forest. The air is cool and smells of pine."),
                _("Mentor: Take one step onto the soft path. Listen. What do you notice first?"),
            ),
            (
                Choice(_("Leaves rustling in the wind"), "forest_2"),
                Choice(_("Birds somewhere high up"), "forest_2"),
                Choice(_("I'm still tense"), "forest_tense"),
            ),
        ),
        "forest_tense": Node(
            (
                _("Mentor: That's alright. Tension doesn't leave at once."),
                _("Mentor: Breathe out a little longer than you breathe in. Once more."),
                _("Mentor: The forest will wait."),
            ),
            (Choice(_("Walk on"), "forest_2"), _OTHER_WAYS),
            exercise="breathe",
        ),
        "forest_2": Node(
            (
                _("Mentor: Walk slowly. Sunlight falls between the trees in warm stripes."),
                _("Mentor: Ahead there is a clearing with a wide, flat stone warmed by the sun."),
            ),
            (Choice(_("Sit on the stone"), "forest_3"), Choice(_("Touch a tree trunk"), "forest_tree")),
        ),
        "forest_tree": Node(
            (
                _("Mentor: The bark is rough and solid. This tree has stood through a hundred storms."),
                _("Mentor: Some of that steadiness can be yours too. Now, the clearing."),
            ),
            (Choice(_("Sit on the stone"), "forest_3"),),
        ),
        "forest_3": Node(
            (
                _("Mentor: Sit down. Your worry is a small cloud above the trees."),
                _("Mentor: You can watch it drift. It is there, but it is not you, and it is moving on."),
            ),
            (Choice(_("I feel calmer"), "check"), _OTHER_WAYS),
        ),
        "name_it": Node(
            (_("Mentor: A fear gets smaller once it has a name. Which is closest?"),),
            (
                Choice(_("Something that might happen"), "future"),
                Choice(_("What people might think of me"), "people"),
                Choice(_("I can't say what it is"), "unknown"),
            ),
        ),
        "future": Node(
            (
                _("Mentor: Ask yourself: how likely is it, really? Not possible: likely."),
                _("Mentor: And if it did happen, what would be your very first step?"),
            ),
            (Choice(_("I know my first step"), "plan"), _OTHER_WAYS),
        ),
        "plan": Node(
            (
                _("Fear: Oh. When there's a plan, I can stop shouting. You've got this."),
                _("Mentor: Keep that step in mind. You are more prepared than the fear says."),
            ),
            (Choice(_("I feel calmer"), "check"), _OTHER_WAYS),
        ),
        "people": Node(
            (
                _("Mentor: Most people think about us far less than we fear."),
                _("Mentor: They are busy with their own worries."),
                _("Mentor: And those who matter will see more of you than one awkward moment."),
            ),
            (Choice(_("I feel calmer"), "check"), _OTHER_WAYS),
        ),
        "unknown": Node(
            (
                _("Mentor: Anxiety without a name is very common. Your body is on alert, and that's all."),
                _("Mentor: Let's bring it back to the present, step by step."),
            ),
            (Choice(_("Ground myself here and now"), "ground_1"), _OTHER_WAYS),
        ),
        "ground_1": Node(
            (_("Mentor: Look around and name five things you can see. Take your time."),),
            (Choice(_("I found five"), "ground_2"),),
        ),
        "ground_2": Node(
            (
                _("Mentor: Now four things you can touch: a sleeve, a table, the floor under your feet…"),
                _("Mentor: Then three sounds, two smells and one slow breath."),
            ),
            (Choice(_("Done"), "ground_3"),),
        ),
        "ground_3": Node(
            (_("Fear: Hey, that's quieter in here. You are here, now, and you are safe."),),
            (Choice(_("I feel calmer"), "check"), _OTHER_WAYS),
        ),
        "check": Node(
            (_("Mentor: How do you feel now?"),),
            (_IN_CONTROL, Choice(_("A bit better; let's do more"), "menu")),
        ),
        "in_control": Node(
            (
                _("Mentor: Well done. You looked at the fear, and you are still here: steady."),
                _("Fear: Thanks for listening to me without letting me drive. Come back any time."),
            ),
        ),
    },
)

DIALOGUES = {"sadness": SADNESS_CHAT, "fear": FEAR_MENTOR}
