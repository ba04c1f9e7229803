"""The agency's routing rules as data: what goes to a human, and how urgency is said in French.

Patterns match folded text (lowercase, no accents; see `copines.text.fold`).
"""

from __future__ import annotations

import re

_A = r"['’ ]?"  # an apostrophe, typed or not

# (pattern, primary need): out of scope for the experts, or a visitor asking for a human.
ESCALATE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\b(parler|echanger|discuter|voir)\s+(a|avec)\s+(un\s+|une\s+)?(vrai\w*\s+)?"
            rf"(humain|personne\b|quelqu{_A}un|quelqu|conseill|membre|l{_A}equipe|equipe)"
        ),
        "demande à parler à une personne de l'équipe",
    ),
    (
        re.compile(
            r"\b(vrai\w* (personne|humain\w*)|un humain|une humaine|conseill\w+ humain|"
            r"passe[zr]?[- ]moi\b|pas (avec )?un robot|t{_A}es un (bot|robot)|"
            rf"quelqu{_A}un de (l{_A}equipe|chez vous|l{_A}agence)|me rappeler|"
            r"numero de telephone|joindre l{_A}agence|me contacte\w*)".replace("{_A}", _A)
        ),
        "demande à parler à une personne de l'équipe",
    ),
    (re.compile(r"\bpartenariat\b"), "proposition de partenariat"),
    (
        re.compile(
            r"\b(rembours\w*|resili\w*|preleve\w*|prelevement\w*|debitee? (deux|2) fois|"
            r"recuperer mon argent|annuler mon (inscription|achat|abonnement|paiement)|"
            r"espace (membre|eleve)|replays?\b|"
            rf"(mon|l{_A}) acces a (la|ma|votre) formation)".replace("{_A}", _A)
        ),
        "facturation, abonnement ou accès aux formations de l'agence",
    ),
    (
        re.compile(
            r"\b(tva|urssaf|impots?|fiscal\w*|comptab\w*|bnc|declaration de revenus|"
            r"declarer a|chiffre d.affaires|expert.comptable|deduire)\b"
        ),
        "question fiscale ou comptable",
    ),
    (
        re.compile(
            rf"\b(juridique\w*|legal\w*|avocat\w*|cgv|mentions legales|plainte|tribunal|"
            rf"(ai.?je|j{_A}ai|a.?t.?on|avons.nous) le droit|rc pro|assurance|diplome)\b".replace(
                "{_A}", _A
            )
        ),
        "question juridique ou réglementaire",
    ),
    (
        re.compile(
            r"\b(medic\w*|medecin|traitement|anticoagul\w*|enceinte|grossesse|douleur\w*|"
            r"symptome\w*|diagnost\w*|huiles? essentielles?|ordonnance|maladie|"
            r"contre.indic\w*)\b"
        ),
        "question de santé ou médicale",
    ),
    (
        re.compile(
            r"\b(service client|pas serieux|inadmissible|scandal\w*|arnaque\w*|"
            r"reclamation|tres decue?|vraiment decue?|pas satisfaite?|"
            r"attends? une reponse)"
        ),
        "réclamation sur un service de l'agence",
    ),
    (
        re.compile(
            r"\b(meteo|fait beau|recette|gateau|resto|restaurant|film|serie netflix|"
            r"football|horoscope|vacances a)\b"
        ),
        "sujet sans rapport avec l'agence",
    ),
]

# Words that are out of scope when they are about the agency's own service, but that an
# automation question may use too ("automatiser l'envoi de la facture Stripe"): they escalate
# only when the message names no expert topic.
WEAK_ESCALATE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"\b(factur\w*|mot de passe|mon abonnement|mon compte)\b"),
        "facturation, abonnement ou accès aux formations de l'agence",
    ),
]

# Written for the router (not taken from any test set): what the team, not an expert, answers.
ESCALATE_EXEMPLARS: list[str] = [
    "Je souhaite me faire rembourser mon achat, je n'ai pas utilisé le programme.",
    "On m'a débité le mauvais montant pour mon abonnement, vous pouvez corriger ?",
    "Où est-ce que je trouve mes factures de l'année dernière ?",
    "Comment j'arrête mon abonnement mensuel à l'agence ?",
    "Je n'arrive plus à me connecter à mon compte élève sur votre plateforme.",
    "Le lien vers le module 2 de votre formation ne fonctionne plus.",
    "Est-ce que je dois déclarer mes revenus de coaching en BIC ou en BNC ?",
    "Quel statut juridique choisir pour ouvrir mon cabinet de naturopathie ?",
    "Je dépasse le seuil de la micro-entreprise, qu'est-ce que ça change pour mes impôts ?",
    "Est-ce que mes séances de reiki sont soumises à la TVA ?",
    "Comment je rédige un contrat pour mes accompagnements individuels ?",
    "Est-ce que j'ai le droit d'utiliser une musique connue dans ma salle d'attente ?",
    "Quelles mentions obligatoires je dois mettre sur mon site de thérapeute ?",
    "Une cliente souffre de migraines chroniques, quel protocole tu lui conseilles ?",
    "Est-ce que le jeûne est dangereux pour une personne diabétique ?",
    "Ma cliente arrête ses antidépresseurs, est-ce que la méditation suffit ?",
    "Quels compléments alimentaires donner à un enfant de 5 ans ?",
    "Je suis vraiment mécontente de l'accompagnement, personne ne m'a répondu.",
    "Ça fait deux fois que je signale le problème et rien ne bouge, c'est décevant.",
    "Je voudrais parler à quelqu'un, pas à un assistant automatique.",
    "Est-ce que je peux avoir un rendez-vous téléphonique avec une personne de l'agence ?",
    "Vous pouvez transmettre ma demande à l'équipe ?",
    "Je veux un interlocuteur humain.",
    "Je suis journaliste et j'aimerais interviewer les fondatrices de l'agence.",
    "Quel temps fera-t-il demain à Marseille ?",
    "Tu peux m'aider à choisir un cadeau pour l'anniversaire de ma mère ?",
    "Quelle est la capitale de l'Australie ?",
    "Tu connais un bon film à regarder ce soir ?",
    "Comment je répare la fuite de mon lave-vaisselle ?",
    "Qui a gagné le match hier soir ?",
    "Je traverse une période très difficile, j'ai des idées noires et je ne sais plus quoi faire.",
    "Mon associée veut partir avec la moitié de la clientèle, quels sont mes recours ?",
    "Est-ce que je peux me former à l'hypnose avec mon CPF ?",
    "Combien je dois mettre de côté pour les cotisations sociales ?",
    "Mon compte bancaire professionnel est bloqué, que faire ?",
]

# Messages that lean on the previous turns rather than naming a topic.
FOLLOWUP_PATTERNS = re.compile(
    r"^(et|ok|okay|d.accord|daccord|merci|super|top|donc|alors|oui|ah|hmm|parfait|genial)\b|"
    r"\betape \d|\bexemple\b|\bensuite\b|c.est a dire|\bdetaill|\bpreciser?\b|pas compris|"
    r"\bla suite\b|\bet si\b|\bet pour\b|\bet apres\b|\bcomme ca\b|\bca marche\b|"
    r"\bcombien de temps\b|\bau lieu\b|\bdu coup\b"
)

# Said when one part of a mixed message is urgent...
URGENCY = re.compile(
    r"urgent|urgence|tout de suite|la maintenant|ce soir|demain|aujourd.hui|"
    r"dans (une|1|deux|2|\d+) ?(h\b|heure|min)|cet apres.midi|ce matin|minuit|"
    r"priorite|plus presse|avant tout|asap|au plus vite|du jour"
)
# ...and when another part can wait.
DEFERRAL = re.compile(
    r"plus tard|(ca|peut|peuvent|pourra|pourront) attendre|attendra|on verra|un jour\b|"
    r"pas grave|pas presse|mois prochain|semaine pro|dans un second temps|passe apres"
)

# Thanks, greetings and acknowledgements: nothing to route, the conversation's expert replies.
# A message is small talk when it has at least one of these markers and, besides them, only
# words of the same register or words without a topic (see `is_small_talk`).
SMALL_TALK_MARKERS = frozenset(
    """
    merci mercii merciii remercie ok okay oki daccord accord super top parfait parfaite genial
    geniale cool nickel bonjour bonsoir salut coucou hello bientot demain revoir bisous bravo
    entendu note noted yes ouf chouette bonne
    """.split()
)
SMALL_TALK_WORDS = SMALL_TALK_MARKERS | frozenset(
    """
    beaucoup bien mille fois infiniment bonne bon belle excellente journee soiree semaine weekend
    week end plus tard ca marche tres vraiment trop pour votre ton ta vos tes reponse reponses
    aide conseils conseil explication explications retour retours prochaine vite tout cela
    compris vais essayer tester teste regarde regarder lire relire note chere madame soir
    matin maintenant aujourd hui
    """.split()
)
