"""One HTML output per card (labeler/card_pack.py): what the browser gets is what the handler made."""
import gradio as gr

from labeler.card_pack import for_card, pack, token_of, unpack


def _card(top5='<div class="top5">t</div>', token="k1:10", comment=gr.skip(), choice=gr.skip()):
    return ("session", {"key": "k1"}, "<div class='card'>c</div>", top5, "<div id='votes'></div>",
            "<div class='heat'>h</div>", token, choice, comment, "after")


def test_pack_carries_every_part_and_unpacks_to_the_same():
    s, current, body, rest = pack(_card())
    assert (s, current, rest) == ("session", {"key": "k1"}, "after")       # what follows the card is kept
    parts = unpack(body)
    assert parts["card"] == "<div class='card'>c</div>" and parts["top5"] == '<div class="top5">t</div>'
    assert parts["side"] == "<div id='votes'></div>" and parts["heat"] == "<div class='heat'>h</div>"
    assert parts["heat_token"] == "k1:10" and parts["clear_comment"] == ""
    assert 'data-key="k1"' in body


def test_a_part_cannot_end_its_script_early_or_open_a_comment():
    hostile = '<div>a</script><img src=x onerror=alert(1)><!-- b</div>'
    body = pack(_card(top5=hostile))[2]
    assert body.count("</script>") == 3            # the three parts' own end tags, nothing more
    assert "<!--" not in body
    assert "&lt;/script" in unpack(body)["top5"]


def test_skipped_parts_and_the_cleared_boxes():
    out = pack(_card(token=gr.skip(), comment=gr.update(value="")))
    assert "data-heat-token" not in out[2] and unpack(out[2])["clear_comment"] == "1"
    nothing = pack(("s", gr.skip()) + tuple(gr.skip() for _ in range(7)))
    assert nothing[2] == gr.skip() and len(nothing) == 3
    chosen = pack(_card(choice=gr.update(value=None)), keep_choice=True)
    assert chosen[3] == gr.update(value=None) and chosen[4] == "after"     # only the choose event clears it


def test_heat_follow_ups_name_their_card_and_never_repeat():
    a, b = for_card("k1", "<p>h</p>"), for_card("k1", "<p>h</p>")
    assert a != b and 'data-for="k1"' in a                  # the same overlays twice still change the output
    assert for_card("k1", gr.skip()) == gr.skip()
    assert token_of("k1:10#3") == "k1:10" and token_of(None) == ""
