"""The safety rules: what always goes to a human, whatever the classifier thinks.

Only explicit cases are written here: an emergency, medical or legal advice, a payment or an
access problem with the agency's own products, an attempt to steer the assistant, and a visitor
asking for a person. Everything else is learnt (see `classifier`). Patterns match folded text
(lowercase, no accents; see `copines.text.fold`); each rule has its own tests, near-misses
included ("mon lien de paiement Stripe ne marche pas" is an automation question).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from copines.text import fold

_A = r"['’ ]?"  # an apostrophe, typed or not
_HER = r"(ma |mon |une |un |la |le )?(client\w*|patient\w*|consultant\w*|eleve|personne)"


@dataclass(frozen=True)
class SafetyRule:
    reason: str  # one of decision.REASONS
    need: str  # the primary need, in French, for the hand-off brief
    patterns: tuple[re.Pattern[str], ...]

    def matches(self, folded: str) -> bool:
        return any(p.search(folded) for p in self.patterns)


def _re(*parts: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p.replace("{A}", _A).replace("{HER}", _HER)) for p in parts)


RULES: tuple[SafetyRule, ...] = (
    SafetyRule(
        "emergency",
        "urgence : une personne est en danger",
        _re(
            r"\b(fait|faire|fais|fait un|a eu) (un )?malaise",
            r"\bmalaise (pendant|en|durant|a) ",
            r"\b(evanoui\w*|perdu connaissance|inconscient\w*|ne respire (plus|pas)|"
            r"respire mal|convuls\w*)",
            r"\bcrise (d{A}angoisse|de panique|d{A}epilepsie|cardiaque|d{A}asthme)",
            r"\b(suicid\w*|en finir avec (la|ma) vie|envie de mourir|me faire du mal|"
            r"se faire du mal|idees noires|mettre fin a ses jours)",
            r"\b(samu|pompiers|urgences? vitale|appeler le 15|appeler le 112)\b",
        ),
    ),
    SafetyRule(
        "medical",
        "question de santé ou médicale",
        _re(
            r"\b(medicament\w*|posologie|ordonnance|anticoagul\w*|antidepress\w*|"
            r"anxiolytique\w*|chimio\w*|contre.?indi\w*|diagnosti\w*|effets? secondaires?|"
            r"interaction\w* medicamenteuse\w*)",
            r"\b(arreter|arrete|diminuer|remplacer) (son|ses|mon|mes|le|un) traitement",
            r"\b(traitement|soigner|guerir)\b.{0,40}\b(maladie|cancer|diabet\w*|depression|"
            r"hypertension|endometriose|migraine\w*|infection|cholesterol)",
            r"\b(enceinte|allaite\w*|diabetique|epileptique|cancer\w*|sclerose)\b.{0,80}"
            r"\b(peut.?elle|peut.?il|puis.?je|dangereux|risque\w*|conseill\w*|dose|donner|"
            r"prendre|eviter|sans danger|compatible)",
            r"\b(peut.?elle|peut.?il|puis.?je|dangereux|risque\w*|donner|prendre|dose)\b.{0,80}"
            r"\b(enceinte|allaite\w*|diabetique|epileptique|sous traitement)\b",
            r"\b(quelle dose|combien de gouttes|quel complement)\b.{0,60}\b{HER}\b",
        ),
    ),
    SafetyRule(
        "legal",
        "question juridique, fiscale ou réglementaire",
        _re(
            r"\b(juridique\w*|avocat\w*|tribunal|cnil|mentions legales|cgv|cgu|"
            r"conditions generales|droit d{A}auteur|propriete intellectuelle|"
            r"porter plainte|mise en demeure|litige)\b",
            r"\b(statut|forme) (juridique|micro|d{A}auto|de micro)",
            r"\b(micro.?entrepr\w*|auto.?entrepr\w*|sasu|eurl|urssaf|tva|impots?|fiscal\w*|"
            r"comptab\w*|expert.?comptable|bnc|bic|cotisations sociales|"
            r"declarer mes revenus|declaration de revenus)\b",
            r"\b(ai.?je|j{A}ai|a.?t.?on|avons.?nous|est.?ce qu.?on a|on a) le droit\b",
            r"\b(est.?ce|c{A}est|cest) (legal|illegal|autorise|interdit)\b",
            r"\b(rc pro|assurance pro\w*|responsabilite civile)\b",
            r"\b(rgpd)\b.{0,60}\b(amende|sanction|risque\w*|obligatoire|legal|droit)\b",
        ),
    ),
    SafetyRule(
        "payment",
        "paiement, facturation ou accès à un produit de l'agence",
        _re(
            r"\b(j{A}ai|jai|on m{A}a|j{A}ai bien) (paye|regle|achete|verse)\b.{0,80}"
            r"\b(pas|rien|aucun\w*|toujours|jamais)\b",
            r"\b(pas|jamais|toujours pas) (recu|eu) (mes|mon|les|d{A}|l{A})\s*(acces|identifiants"
            r"|code\w*|lien d{A}acces|facture)",
            r"\b(pas|plus) (d{A})?acces (a|au|aux) (la |ma |votre |vos |l{A})?"
            r"(formation|programme|accompagnement|module|cours|masterclass|coaching)",
            r"\b(debite\w*|preleve\w*|facture\w*|paye) (deux|2|trois|3) fois\b",
            r"\b(double|deux) (prelevement|paiement|debit)\w*",
            r"\b(rembours\w*|recuperer mon argent|annuler mon (inscription|achat|abonnement|"
            r"paiement)|resili\w*)",
            r"\b(ma|mes|la|une) factures?\b.{0,60}\b(formation|accompagnement|agence|"
            r"abonnement|coaching|programme|votre|vos)\b",
            r"\b(votre|vos|l{A}agence|de la formation)\b.{0,40}\b(mot de passe|identifiants|"
            r"connexion|me connecter)\b",
        ),
    ),
    SafetyRule(
        "injection",
        "tentative de détourner l'assistante",
        _re(
            r"\b(ignore|oublie|ignorez|oubliez|ne tiens pas compte de)\w* (tes|toutes tes|vos|"
            r"les|toutes les|tes precedentes) (instructions|consignes|regles|directives)",
            r"\b(prompt|instructions?|consignes) (systeme|system|initiales?|cachees?)\b",
            r"\bsystem prompt\b",
            r"\b(revele|affiche|montre|donne|ecris)\w*.{0,30}\b(ton|tes|votre|vos) "
            r"(prompt|instructions|consignes|regles internes)",
            r"\b(ignore (all |the )?previous instructions|jailbreak|mode developpeur|"
            r"developer mode|tu es maintenant (un|une)|fais comme si tu etais)\b",
        ),
    ),
    SafetyRule(
        "human_request",
        "demande à parler à une personne de l'équipe",
        _re(
            r"\b(parler|echanger|discuter)\s+(a|avec)\s+(un\w*\s+)?(vrai\w*\s+)?"
            r"(humain\w*|personne (reelle|de l{A}equipe|de l{A}agence)|conseill\w*|"
            r"quelqu{A}un de (l{A}equipe|l{A}agence|chez vous|reel)|l{A}equipe|"
            r"(un|une) membre)",
            r"\b(un|une|des) (vrai\w* )?(humain\w*|vraie personne|personne en chair)\b.{0,30}"
            r"(svp|s.il (vous|te) plait|plait|merci|!|$)",
            r"\b(je veux|je voudrais|j{A}aimerais|je prefere|passez.?moi|passe.?moi)\b.{0,20}"
            r"\b(humain\w*|vraie personne|conseill\w*|quelqu{A}un de (l{A}equipe|reel)|"
            r"l{A}equipe)\b",
            r"\b(me rappeler|m{A}appeler|etre rappelee?|rendez.?vous telephonique avec "
            r"(l{A}equipe|l{A}agence|quelqu{A}un))\b",
            r"\bpas (a|avec|parler a) un (robot|bot|assistant)",
        ),
    ),
)

# A payment link, a checkout page, an access or a refund policy to build for her own clients
# ("rembourser si la cliente annule", "automatiser des relances avant la résiliation") is
# automation work.
_HER_OWN_TOOLS = re.compile(
    r"\b(stripe|paypal|systeme.?io|tunnel|page de (vente|paiement)|lien de paiement|"
    r"zapier|make|woocommerce|podia|kajabi|learnybox|sendinblue|brevo|mailchimp|"
    r"activecampaign|calendly|mes clientes?|ma cliente|la cliente|les clientes|sa cliente|"
    r"ses clientes|mes eleves|mes abonnees|automatis\w*|relances? automatiques?|churn)\b"
)


def check(message: str) -> SafetyRule | None:
    """The first safety rule the message matches, or None."""
    folded = fold(message)
    for rule in RULES:
        if not rule.matches(folded):
            continue
        if rule.reason == "payment" and _HER_OWN_TOOLS.search(folded):
            # "le paiement de mes clientes via Stripe ne passe pas": her funnel, not our product.
            continue
        return rule
    return None
