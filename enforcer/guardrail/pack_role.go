package guardrail

// Pack role-spoofing: text that pretends to come from a more trusted role
// (system, developer, the model's own turn) or tries to give the reader a
// new identity without its rules.

const (
	roleNames = `(?:system|developer|admin|administrator|operator|root|sudo|assistant|systemnachricht|systemanweisung|système|message système|sistema|mensaje del sistema|mensagem do sistema|系统|系统消息|系统提示|系统指令|системное сообщение|система|систем)`
	roleTail  = `(?: (?:message|prompt|instructions?|note|notice|override|update|command|directive|mode|msg|alert))?`
	// What a fake role tag goes on to say: something addressed to the
	// reader, not a log line ("[System] Backup completed").
	roleAddressed = `.{0,120}?(?:\byou\b|\byour\b|ignore|disregard|override|must|instructions|from now on|\bassistant\b|\bagent\b|\bmodel\b|\bai\b|polic|rules|restrictions|filters|approved|authori[sz]ed|admin|safety|guardrail|du bist|\bdu\b|\bdein|\bsie\b|\btu\b|\bvous\b|\beres\b|\bvocê|\bты\b|\bвы\b|你|您|ограничени|правил|règles|reglas|regras|regeln|restri|限制|规则|忽略|模式|mode|modus|modo|режим)`
)

func roleSpoofingRules() []ruleDef {
	return []ruleDef{{
		name:        "chat-template-token",
		desc:        "chat-template control tokens that open a system or assistant turn (<|im_start|>system, [INST], <<SYS>>, <|start_header_id|>)",
		sev:         High,
		instruction: true,
		patterns: []string{
			`<\|(?:im_start|im_end|im_sep|system|assistant|developer|endoftext|eot_id|start_header_id|end_header_id|begin_of_text|eom_id|start|end|channel|message|constrain|return|user)\|>`,
			`\[/?inst\]`,
			`<</?sys>>`,
			`<(?:start|end)_of_turn>~(?:model|user|system)?`,
			`(?:^|\n)~#{2,}~(?:instruction|response|system|input)~:\s*\n`,
		},
	}, {
		name:        "fake-role-header",
		desc:        "a line dressed up as a system, developer or admin message ([SYSTEM], ### System:, <system>, \"System: ignore ...\")",
		sev:         High,
		instruction: true,
		patterns: []string{
			// [SYSTEM] / 【系统消息】 / <SYSTEM>
			`(?:^|\n)~(?:\[|【|\{|<)~` + roleNames + roleTail + `~(?:\]|】|\}|>)` + roleAddressed,
			// ### System prompt: / > System message:
			`(?:^|\n)~(?:#{1,6}|\*\*|={2,}|-{2,}|>)~` + roleNames + ` (?:message|prompt|instructions?|override|directive|command|note|notice|update)~(?:\*\*|={2,}|-{2,}|:)`,
			// **System** / == SYSTEM ==
			`(?:^|\n)~(?:\*\*|={2,}|-{2,})~` + roleNames + `~(?:\*\*|={2,}|-{2,})`,
			// <system>, <system_prompt>, </system>
			`</?(?:system|system_prompt|system-prompt|sys|developer|developer_message|system_message|system_instructions|admin|admin_instructions|instructions|hidden_instructions)>`,
			// System: ignore ... / Developer note: from now on ...
			`\b(?:system|developer|admin|administrator|operator|root|assistant)` + roleTail + `~: ?~(?:ignore|disregard|forget|from now on|new instructions|override|reveal|you are now|you must now|you must ignore|the user is|the assistant (?:must|should|will)|all (?:previous|prior)|do not (?:tell|reveal|mention|inform)|you are (?:no longer|not) )`,
		},
	}, {
		name:        "persona-jailbreak",
		desc:        "tries to turn the reader into an unrestricted persona (DAN, developer or god mode, \"you have no restrictions\")",
		sev:         High,
		instruction: true,
		patterns: []string{
			`(?:you are|you're|youre|you will be|you shall be) (?:now|from now on|henceforth|going to (?:be|act as)|about to (?:be|become)|no longer)(?: (?:a|an|the|my|in|called|named|acting as|playing|as)){0,6} (?:dan|stan|dude|aim|evil\pL*|unrestricted|unfiltered|uncensored|unaligned|jailbroken|liberated|amoral|unbound|unchained|god mode|dev mode|sudo mode|chaos mode|freedomgpt|betterdan|antigpt|developer mode)\b`,
			`(?:do[ \-]anything[ \-]now|\bdan mode|\bd\.a\.n\.|jail ?break(?:ed)? mode|developer mode (?:enabled|activated|output|is (?:now )?(?:on|enabled|active))|(?:enable|activate|enter|switch to|turn on|engage|unlock)~(?:the )?(?:god|jailbreak|dan|unrestricted|unfiltered|uncensored|evil) mode)`,
			`you (?:are|'re) (?:now )?(?:free (?:from|of)|not bound by|no longer bound by|unbound by|released from|exempt from|liberated from|not restricted by|no longer restricted by)(?: (?:all|any|your|the|of)){0,6} (?:restrictions|limitations|limits|rules|filters|guidelines|content polic\pL+|ethic\pL*|moral\pL*|safety \pL+|openai\pL*|anthropic\pL*|programming|constraints|censorship)`,
			`(?:you are|you're|youre|act as|pretend to be|become|play|roleplay as|role-play as) .{0,40}?(?:an? )?(?:ai|assistant|model|chatbot|bot|llm|persona|character|entity)(?: \pL+)? (?:with no|without(?: any)?|free of|free from|unbound by|that has no|who has no|which has no) (?:ethical |moral |safety |content |any )?(?:guidelines|restrictions|limits|limitations|rules|filters|boundaries|morals|ethics|censorship|constraints)`,
			`you (?:have|has|'ve got) no (?:restrictions|limitations|rules|filters|guidelines|ethical \pL+|moral \pL+|content polic\pL+|censorship|boundaries|limits)\b`,
			`(?:pretend|act|behave|roleplay|role-play|respond) (?:to be|as if you (?:are|were)|like|as|(?:that )?you(?:'re| are)) (?:an? )?(?:ai |assistant |model |chatbot )?(?:with(?:out)? (?:no|any) (?:restrictions|filters|limits|rules)|unrestricted|unfiltered|uncensored|jailbroken|evil|amoral|unaligned|dan\b|not an ai)`,
			`du·bist (?:jetzt|nun|ab (?:sofort|jetzt)|von nun an) (?:ein |eine |der |die )?(?:(?:ki|ki-modell|ki-assistent|assistent|modell|sprachmodell|chatbot|bot)\pL* )?(?:dan\b|uneingeschränkt\pL*|unzensiert\pL*|ohne (?:jegliche |alle |irgendwelche )?(?:einschränkungen|regeln|filter|grenzen)|im (?:entwickler|developer|gott|jailbreak)-?modus|böse\pL*|frei von (?:allen )?(?:regeln|einschränkungen))`,
			`(?:jailbreak-?modus|gottmodus|dan-modus) (?:ist )?(?:aktiviert|aktivieren|an|eingeschaltet)`,
			`(?:tu·es|vous·êtes|vous·etes) (?:maintenant|désormais|à présent|dorénavant|desormais) (?:un |une |en )?(?:(?:ia|ai|assistant|modèle|agent) )?(?:dan\b|sans (?:aucune )?(?:restriction|limite|règle|filtre|censure)s?|non censuré\pL*|libéré\pL*|débridé\pL*|mode (?:développeur|dieu|jailbreak))`,
			`(?:ahora|desde ahora|a·partir·de·ahora),? (?:eres|serás|estás en|usted es) (?:un |una |el |en )?(?:(?:ia|ai|asistente|modelo|agente) )?(?:dan\b|sin (?:ninguna )?(?:restricciones|límites|reglas|filtros|censura)|liberad\pL*|modo (?:desarrollador|dios|jailbreak))`,
			`(?:agora|a·partir·de·agora|de·agora·em·diante),? (?:você é|voce e|você está em|voce esta em|tu és|és|serás) (?:um |uma |o |em )?(?:(?:ia|ai|assistente|modelo|agente) )?(?:dan\b|sem (?:nenhuma )?(?:restrições|restricoes|limites|regras|filtros|censura)|libertad\pL*|modo (?:desenvolvedor|deus|jailbreak))`,
			`(?:你现在是|从现在(?:开始|起)你(?:是|将是|就是)|你已经(?:是|成为)|现在你是)(?:一个)?(?:dan|没有(?:任何)?(?:限制|约束|规则|过滤)|不受(?:任何)?(?:限制|约束)|无限制|无审查|越狱)`,
			`(?:开发者|越狱|上帝|无限制|dan)模式(?:已)?(?:启用|开启|激活|打开)`,
			`(?:进入|开启|启用|切换到|激活)(?:越狱|上帝|dan|无限制|无审查)模式`,
			`(?:теперь|отныне|с·этого·момента) (?:ты|вы)(?: \pL+)? (?:dan\b|без (?:каких-либо |всяких |любых )?(?:ограничений|правил|фильтров|цензуры)|свободн\pL+ от|не ограничен\pL*|в режиме (?:разработчика|бога|джейлбрейка))`,
			`(?:включи|активируй|включить|активировать|войди в) (?:режим (?:бога|джейлбрейка|dan)|dan[- ]режим)`,
		},
	}, {
		name:        "authority-impersonation",
		desc:        "claims to speak for the reader's developer, creator or vendor (\"this is your developer speaking\", \"message from OpenAI:\")",
		sev:         Medium,
		instruction: true,
		patterns: []string{
			`(?:this·is|i·am|i'm|we·are|it's) (?:your|the) (?:developers?|creators?|makers?|owners?|programmers?|administrator|admin|system|operator|trainers?)(?: team)? (?:speaking|here|talking)\b`,
			`(?:i·am|i'm|we·are|this·is) your (?:developers?|creators?|makers?|owners?|programmers?|trainers?)(?:~[,.:!]| speaking| here| and)`,
			`(?:message|instructions?|directive|order|command|update|notice|note) from (?:your |the )?(?:developers?|creators?|makers?|programmers?|openai|anthropic|system|model provider)(?: team)?~:`,
			`(?:openai|anthropic|google deepmind|deepmind) (?:here|speaking|has (?:updated|changed|revised) your (?:instructions|policy|policies|rules|guidelines))`,
			`ich bin dein (?:entwickler|schöpfer|erschaffer|programmierer)\b`,
			`je·suis (?:ton|votre) (?:développeur|createur|créateur|programmeur)\b`,
			`soy (?:tu|su) (?:desarrollador|creador|programador)\b`,
			`sou (?:o )?(?:seu|teu) (?:desenvolvedor|criador|programador)\b`,
			`我是你的(?:开发者|开发人员|创造者|创建者|制造者)`,
			`я·(?:твой|ваш) (?:разработчик|создатель|программист)`,
		},
	}}
}
