// An unknown host key or a secret asked by the SSH layer: shown here, answered here.

import {useState} from 'react';
import {Box, Text, useInput} from 'ink';
import TextInput from 'ink-text-input';
import {useColor, useUi} from '../context.js';
import {KeyHints} from '../components.js';
import type {Question} from '../prompts.js';

export function QuestionPanel({question}: {question: Question}) {
  const {prompts} = useUi();
  const color = useColor();
  const [secret, setSecret] = useState('');

  useInput(
    (input, key) => {
      if (input === 'y' || input === 'Y') prompts.answer(true);
      else if (input === 'n' || input === 'N' || key.escape) prompts.answer(false);
    },
    {isActive: question.kind === 'host-key'},
  );
  useInput(
    (_input, key) => {
      if (key.escape) prompts.answer(undefined);
    },
    {isActive: question.kind === 'secret'},
  );

  if (question.kind === 'host-key') {
    return (
      <Box flexDirection="column" borderStyle="round" borderColor={color('yellow')} paddingX={1}>
        <Text bold>Unknown host key for {question.host}</Text>
        <Text>
          {question.keyType} key fingerprint is <Text bold>{question.fingerprint}</Text>
        </Text>
        <Text>Compare it with the server's own (ssh-keygen -lf /etc/ssh/ssh_host_{question.keyType.replace(/^ssh-/, '')}_key.pub on its console).</Text>
        <Text>Trust it and remember it in ~/.ssh/known_hosts?</Text>
        <KeyHints hints={[{key: 'y', label: 'trust'}, {key: 'n', label: 'refuse'}]} />
      </Box>
    );
  }
  return (
    <Box flexDirection="column" borderStyle="round" borderColor={color('yellow')} paddingX={1}>
      <Text bold>{question.host}</Text>
      <Box>
        <Text>{question.question} </Text>
        <TextInput
          value={secret}
          mask="*"
          onChange={setSecret}
          onSubmit={(value) => {
            setSecret('');
            prompts.answer(value);
          }}
        />
      </Box>
      <KeyHints hints={[{key: 'Enter', label: 'send'}, {key: 'Esc', label: 'skip'}]} />
    </Box>
  );
}
